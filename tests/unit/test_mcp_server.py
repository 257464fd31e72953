"""The MCP server in process (the official ``mcp.Client``), on ``FakeBackend`` sandboxes: the
tools' schemas, session handles, the TTL and the cap, errors naming the field, run_task with
progress, results, token reports and a task's files as resources."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from execloop.errors import SandboxError
from execloop.runtime.mcp_server import build_server
from execloop.runtime.mcp_sessions import SessionTable
from execloop.sandboxes import ExecResult, ExitReason, SandboxSpec
from execloop.testing import FakeBackend, FakeRun

pytestmark = pytest.mark.anyio

TOOLS = {"close_session", "get_result", "list_skills", "run_python", "run_task", "token_report"}


def _namespace_handler(run: FakeRun) -> ExecResult | str | None:
    """A tiny interpreter: `NAME = VALUE` stores, `print(NAME)` prints, `fail` fails, and a
    script writes result.json."""
    store = run.sandbox.__dict__.setdefault("namespace", {})
    code = run.code.strip()
    if code.endswith("fail"):
        return ExecResult(exit_code=1, exit_reason=ExitReason.ERROR, stderr="boom", duration_s=0)
    if run.path is not None:  # a run_task script
        run.files["result.json"] = json.dumps({"rows": 3}).encode()
        run.files["out/clean.jsonl"] = b'{"a": 1}\n'
        return None
    if code.startswith("print("):
        return f"{store[code[6:-1]]}\n"
    name, _, value = code.partition("=")
    store[name.strip()] = value.strip()
    return None


def _server(backend: FakeBackend, **kwargs: Any) -> Any:
    return build_server(spec=SandboxSpec(backend="local"), sandbox_factory=backend, **kwargs)


async def test_tools_have_input_and_output_schemas() -> None:
    async with Client(_server(FakeBackend())) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = (await client.list_resource_templates()).resource_templates
    assert set(tools) == TOOLS
    assert {t.uri_template for t in templates} == {
        "execloop://tasks/{task_id}/artifacts",
        "execloop://tasks/{task_id}/artifacts/{+path}",
    }
    for tool in tools.values():
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    run_python = tools["run_python"]
    assert run_python.input_schema["required"] == ["code"]
    assert {"session_id", "exit_reason", "stdout", "stderr"} <= set(
        run_python.output_schema["properties"]  # type: ignore[index]
    )
    assert run_python.annotations is not None and run_python.annotations.open_world_hint is False


async def test_one_session_id_keeps_state_and_a_failed_script_is_data() -> None:
    backend = FakeBackend(_namespace_handler)
    async with Client(_server(backend)) as client:
        first = await client.call_tool("run_python", {"code": "x = 42"})
        handle = first.structured_content["session_id"]  # type: ignore[index]
        second = await client.call_tool("run_python", {"code": "print(x)", "session_id": handle})
        other = await client.call_tool("run_python", {"code": "y = 1"})
        failed = await client.call_tool("run_python", {"code": "fail", "session_id": handle})
    assert second.structured_content["stdout"] == "42\n"  # type: ignore[index]
    assert other.structured_content["session_id"] != handle  # type: ignore[index]
    assert len(backend.sandboxes) == 2
    assert failed.is_error is False
    assert failed.structured_content["exit_reason"] == "error"  # type: ignore[index]
    assert failed.structured_content["stderr"] == "boom"  # type: ignore[index]
    assert all(sandbox.closed for sandbox in backend.sandboxes)  # the server stopped


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"code": "x = 1", "session_id": "nope"}, "session_id"),
        ({"code": "x = 1", "timeout_s": -1}, "timeout_s"),
        ({"code": "x = 1", "memory": "lots"}, "memory"),
        ({"code": "x = 1", "backend": "restricted"}, "backend"),
        ({"code": 7}, "code"),
        ({}, "code"),
    ],
)
async def test_a_bad_argument_is_a_tool_error_naming_it(
    arguments: dict[str, Any], field: str
) -> None:
    async with Client(_server(FakeBackend())) as client:
        result = await client.call_tool("run_python", arguments)
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert field in text
    assert text != "Error executing tool run_python"  # never the withheld message


async def test_limits_of_a_new_session_are_refused_with_a_handle() -> None:
    async with Client(_server(FakeBackend(_namespace_handler))) as client:
        first = await client.call_tool("run_python", {"code": "x = 1"})
        handle = first.structured_content["session_id"]  # type: ignore[index]
        again = await client.call_tool(
            "run_python", {"code": "x = 2", "session_id": handle, "memory": "2g"}
        )
        closed = await client.call_tool("close_session", {"session_id": handle})
        gone = await client.call_tool("run_python", {"code": "x = 3", "session_id": handle})
    assert again.is_error and again.content[0].text.startswith(  # type: ignore[union-attr]
        "Error executing tool run_python: memory:"
    )
    assert closed.structured_content == {"session_id": handle, "closed": True}
    assert gone.is_error and "session_id" in gone.content[0].text  # type: ignore[union-attr]


async def test_the_cap_on_open_sessions_is_a_clear_error() -> None:
    async with Client(_server(FakeBackend(), max_sessions=2)) as client:
        for _ in range(2):
            assert not (await client.call_tool("run_python", {"code": "x = 1"})).is_error
        third = await client.call_tool("run_python", {"code": "x = 1"})
    assert third.is_error
    assert "2 sessions are open (max_sessions)" in third.content[0].text  # type: ignore[union-attr]


async def test_idle_sessions_are_closed_after_the_ttl() -> None:
    backend = FakeBackend()
    table = SessionTable(ttl_s=60, max_sessions=4, sandbox_factory=backend)
    idle = await table.open(SandboxSpec(backend="local"))
    fresh = await table.open(SandboxSpec(backend="local"))
    idle.used_at = time.monotonic() - 61  # as if a minute had passed unused
    assert await table.reap_idle() == [idle.id]
    assert idle.sandbox.closed and not fresh.sandbox.closed
    assert table.ids == [fresh.id]
    await table.close_all()
    assert fresh.sandbox.closed and len(table) == 0


def _replies(tmp_path: Path, *scripts: str) -> str:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(list(scripts)))
    return f"scripted:{path}"


Progress = list[tuple[float, float | None, str | None]]


async def _run_task(client: Client, arguments: dict[str, Any]) -> tuple[Any, Progress]:
    """run_task called with the official client's progress_callback: the result, and every
    (progress, total, message) it was told."""
    seen: Progress = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    result = await client.call_tool("run_task", arguments, progress_callback=on_progress)
    return result, seen


async def test_run_task_returns_a_verified_result_with_progress_and_its_files(
    tmp_path: Path,
) -> None:
    # attempt 1's script fails; attempt 2's passes the check
    model = _replies(tmp_path, "fail", "print('hi')")
    check = {"kind": "expression", "expr": "result['rows'] == 3"}
    async with Client(_server(FakeBackend(_namespace_handler))) as client:
        result, progress = await _run_task(
            client, {"goal": "count rows", "model": model, "checks": [check], "max_attempts": 3}
        )
        task = result.structured_content
        assert task is not None and not result.is_error
        stored = await client.call_tool("get_result", {"task_id": task["task_id"]})
        report = await client.call_tool("token_report", {"task_id": task["task_id"]})
        run = await client.call_tool("token_report", {})
        listing = await client.read_resource(f"execloop://tasks/{task['task_id']}/artifacts")
        data = await client.read_resource(
            f"execloop://tasks/{task['task_id']}/artifacts/out/clean.jsonl"
        )
        with pytest.raises(MCPError, match="no such file"):
            await client.read_resource(f"execloop://tasks/{task['task_id']}/artifacts/nope")
    assert task["status"] == "passed" and task["attempts"] == 2 and task["scripted"] is True
    assert progress == [
        (0, 3, "attempt 1 of 3"),
        (1, 3, "attempt 2 of 3"),
        (3, 3, "passed after attempt 2 of 3"),
    ]
    assert stored.structured_content == task
    ledger = report.structured_content
    assert ledger is not None and ledger["scope"] == "task"
    assert ledger["tasks"][0]["usage"] == task["usage"]
    assert run.structured_content["tasks"][0]["task_id"] == task["task_id"]  # type: ignore[index]
    files = json.loads(listing.contents[0].text)  # type: ignore[union-attr]
    assert {f["path"] for f in files["files"]} >= {"result.json", "out/clean.jsonl"}
    assert data.contents[0].blob  # type: ignore[union-attr]


def _steps(*steps: tuple[float, float | None]) -> str:
    lines = [{"execloop": "progress", "step": step, "total": total} for step, total in steps]
    return "".join(
        json.dumps({k: v for k, v in line.items() if v is not None}) + "\n" for line in lines
    )


def _training_handler(run: FakeRun) -> ExecResult | str | None:
    """Each attempt's script reports step 3 of 4, then (the reader passes on the first and the
    last of a burst) step 1 of 4, out of order; the first attempt then fails, the second
    writes result.json."""
    steps = _steps((3, 4), (2, 4), (1, 4))
    if run.code.strip().endswith("fail"):
        return ExecResult(exit_code=1, exit_reason=ExitReason.ERROR, stdout=steps, duration_s=0)
    run.files["result.json"] = json.dumps({"rows": 3}).encode()
    return steps


async def test_run_task_progress_only_ever_goes_up_across_attempts(tmp_path: Path) -> None:
    model = _replies(tmp_path, "fail", "print('hi')")
    check = {"kind": "expression", "expr": "result['rows'] == 3"}
    async with Client(_server(FakeBackend(_training_handler))) as client:
        result, seen = await _run_task(
            client, {"goal": "train", "model": model, "checks": [check], "max_attempts": 4}
        )
    assert result.structured_content["status"] == "passed"  # type: ignore[index]
    assert [message for _, _, message in seen] == [
        "attempt 1 of 4",
        "attempt 1 of 4: step 3/4",
        "attempt 1 of 4: step 1/4",
        "attempt 2 of 4",
        "attempt 2 of 4: step 3/4",
        "attempt 2 of 4: step 1/4",
        "passed after attempt 2 of 4",
    ]
    assert {total for _, total, _ in seen} == {4}
    values = [done for done, _, _ in seen]
    assert all(later > earlier for earlier, later in itertools.pairwise(values)), values
    # attempt k spans [k-1, k): its start, step 3/4 at 3/4 of 0.99, the late step 1/4
    # half-way from there to 0.99; the verdict at the total
    late = (0.99 * 3 / 4 + 0.99) / 2
    assert values == pytest.approx([0, 0.99 * 3 / 4, late, 1, 1 + 0.99 * 3 / 4, 1 + late, 4])


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"goal": "x"}, "model"),  # the server has no default model
        ({"goal": "x", "model": "nonsense"}, "model"),
        ({"goal": "x", "model": "MODEL", "skill": "no-such-skill"}, "skill"),
        ({"goal": "x", "model": "MODEL", "inputs": ["/no/such/file"]}, "inputs"),
        ({"goal": " ", "model": "MODEL"}, "goal"),
        ({"goal": "x", "model": "MODEL", "checks": [{"kind": "expression"}]}, "checks"),
        ({"goal": "x", "model": "MODEL", "max_attempts": 0}, "max_attempts"),
    ],
)
async def test_run_task_errors_name_the_field(
    tmp_path: Path, arguments: dict[str, Any], field: str
) -> None:
    if arguments.get("model") == "MODEL":
        arguments["model"] = _replies(tmp_path, "print(1)")
    async with Client(_server(FakeBackend())) as client:
        result = await client.call_tool("run_task", arguments)
        unknown = await client.call_tool("get_result", {"task_id": "t-unknown"})
        both = await client.call_tool("token_report", {"task_id": "a", "run_id": "b"})
    assert result.is_error
    assert field in result.content[0].text  # type: ignore[union-attr]
    assert "task_id" in unknown.content[0].text  # type: ignore[union-attr]
    assert "task_id, run_id" in both.content[0].text  # type: ignore[union-attr]


async def test_list_skills_lists_the_builtin_ones() -> None:
    async with Client(_server(FakeBackend())) as client:
        listed = await client.call_tool("list_skills", {})
    skills = listed.structured_content["skills"]  # type: ignore[index]
    assert "data-clean" in {skill["name"] for skill in skills}
    assert all(skill["inputs"]["type"] == "object" for skill in skills)


async def test_a_server_for_remote_clients_reads_host_files_only_under_inputs_dir(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.csv").write_text("a\n1\n")
    (tmp_path / "secret.txt").write_text("no")
    model = _replies(tmp_path, "print('hi')")
    closed = _server(FakeBackend(_namespace_handler), model=model, host_paths=False)
    scoped = _server(
        FakeBackend(_namespace_handler), model=model, host_paths=False, inputs_dir=shared
    )
    async with Client(closed) as client:
        refused = await client.call_tool("run_task", {"goal": "x", "inputs": ["data.csv"]})
        other_model = await client.call_tool("run_task", {"goal": "x", "model": "scripted:/x"})
    async with Client(scoped) as client:
        outside = await client.call_tool("run_task", {"goal": "x", "inputs": ["../secret.txt"]})
        inside = await client.call_tool("run_task", {"goal": "x", "inputs": ["data.csv"]})
    assert refused.is_error and "inputs: this server reads no host paths" in _text(refused)
    assert other_model.is_error and _text(other_model).startswith(
        "Error executing tool run_task: model:"
    )
    assert outside.is_error and "outside the server's --inputs-dir" in _text(outside)
    assert inside.structured_content["status"] == "passed", inside.content  # type: ignore[index]


def _text(result: Any) -> str:
    return str(result.content[0].text)


async def test_a_failed_task_is_a_result_and_keeps_no_files(tmp_path: Path) -> None:
    model = _replies(tmp_path, "fail")
    async with Client(_server(FakeBackend(_namespace_handler), model=model)) as client:
        result = await client.call_tool("run_task", {"goal": "x", "max_attempts": 1})
        task = result.structured_content
        assert task is not None and not result.is_error
        with pytest.raises(MCPError, match="has no kept files"):
            await client.read_resource(f"execloop://tasks/{task['task_id']}/artifacts")
    assert task["status"] == "failed" and task["attempts"] == 1


async def test_a_sandbox_that_fails_as_infrastructure_closes_its_session() -> None:
    def handler(run: FakeRun) -> None:
        if run.code == "die":
            raise SandboxError("the helper vanished")

    backend = FakeBackend(handler)
    async with Client(_server(backend)) as client:
        first = await client.call_tool("run_python", {"code": "x = 1"})
        handle = first.structured_content["session_id"]  # type: ignore[index]
        died = await client.call_tool("run_python", {"code": "die", "session_id": handle})
        after = await client.call_tool("run_python", {"code": "x", "session_id": handle})
        assert backend.sandboxes[0].closed  # closed at once, not when the server stops
    assert died.is_error and _text(died).endswith(f"(session {handle} is closed)")
    assert after.is_error and "session_id" in _text(after)


async def test_a_run_task_the_client_abandons_is_cancelled(tmp_path: Path) -> None:
    started = anyio.Event()

    async def handler(run: FakeRun) -> None:
        started.set()
        await anyio.sleep_forever()  # a script that never ends

    async with Client(_server(FakeBackend(handler), model=_replies(tmp_path, "x"))) as client:
        with pytest.raises(MCPError):  # the client stops waiting (and says so)
            await client.call_tool("run_task", {"goal": "x"}, read_timeout_seconds=1)
        assert started.is_set()
        report = await _when_a_task_has_its_result(client)
        (task,) = report.structured_content["tasks"]  # type: ignore[index]
        stored = await client.call_tool("get_result", {"task_id": task["task_id"]})
    assert stored.structured_content["error"] == "cancelled"  # type: ignore[index]


async def _when_a_task_has_its_result(client: Client) -> Any:
    """The run's token report once a task of it has its result (bounded by a deadline)."""
    with anyio.fail_after(30):
        for _ in itertools.count():
            report = await client.call_tool("token_report", {})
            if report.structured_content["tasks"]:  # type: ignore[index]
                return report
            await anyio.sleep(0.05)
    raise AssertionError("unreachable")
