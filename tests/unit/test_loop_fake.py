"""The loop without Docker: ``SubAgent`` on ``execloop.testing``'s FakeSandbox and
FunctionModel. Scripts here are tiny JSON programs the fake's handler interprets (files to
write, stderr, exit status), so every path of the loop is driven exactly: feedback, budgets,
checks, re-verification, error kinds, and what is fetched and counted per attempt."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest

from execloop.errors import ModelError, SandboxStartError, SkillError
from execloop.runtime import tokens
from execloop.runtime.checks import ExpressionCheck, JsonSchemaCheck
from execloop.runtime.loop import SubAgent
from execloop.runtime.models.base import Message, ModelRequest
from execloop.runtime.task import Budget, ErrorKind, Result, Task, TaskStatus
from execloop.sandboxes import ExecResult, ExitReason, SandboxSpec
from execloop.sandboxes.tempdirs import PREFIX
from execloop.testing import FakeBackend, FakeRun, FunctionModel, ScriptedModel

pytestmark = pytest.mark.anyio

TOTAL_IS_10 = ExpressionCheck(expr='result["total"] == 10')


def program(files: dict[str, Any] | None = None, *, exit: int = 0, stderr: str = "") -> str:
    """A script for the fake: write ``files`` (JSON values), then end with ``exit``."""
    return json.dumps({"files": files or {}, "exit": exit, "stderr": stderr})


def interpret(run: FakeRun) -> ExecResult:
    """The fake's handler: run a ``program``."""
    spec = json.loads(run.code)
    for name, value in spec["files"].items():
        run.files[name] = json.dumps(value).encode()
    failed = spec["exit"] != 0
    return ExecResult(
        exit_code=spec["exit"],
        exit_reason=ExitReason.ERROR if failed else ExitReason.OK,
        stderr=spec["stderr"],
        duration_s=0.0,
    )


def _task(**fields: Any) -> Task:
    fields.setdefault("checks", (TOTAL_IS_10,))
    return Task(goal="Write result.json with total 10.", **fields)


async def _run(task: Task, model: Any, backend: FakeBackend | None = None) -> Result:
    return await SubAgent(
        task, model=model, sandbox_factory=backend or FakeBackend(interpret)
    ).run()


async def test_a_pass_fetches_result_json_once_and_reverifies_the_host_copy() -> None:
    backend = FakeBackend(interpret)
    model = ScriptedModel([program({"result.json": {"total": 10}})])
    result = await _run(_task(), model, backend)
    assert result.status is TaskStatus.PASSED, result.checks
    assert (result.error, result.error_kind) == (None, None)
    assert json.loads(result.answer) == {"total": 10}
    # an expression runs no code: it is re-judged on the host copy, with no second sandbox
    (agent,) = backend.sandboxes
    assert len(agent.runs) == 1  # the script never runs again
    # once for the checks and the answer together; the workspace once, for re-verification,
    # which reads the host copy and fetches nothing by name
    assert backend.fetched("result.json") == 1
    assert agent.downloads == ["result.json", "."]
    assert agent.closed


async def test_a_failing_check_is_fed_back_and_the_second_attempt_passes() -> None:
    def reply(request: ModelRequest, number: int) -> str:
        total = 9 if number == 1 else 10
        return program({"result.json": {"total": total}}, stderr="warning: sloppy\n")

    model = FunctionModel(reply)
    backend = FakeBackend(interpret)
    result = await _run(_task(), model, backend)
    assert result.status is TaskStatus.PASSED and result.attempts == 2
    assert [r.checks_passed for r in result.attempt_log] == [1, 2]
    second = model.requests[1].messages[-1].content
    assert "FAILED" in second and 'result["total"] == 10' in second
    assert '"total": 9' in second  # the last script is quoted back
    assert "FAILED" not in model.requests[0].messages[-1].content
    assert backend.fetched("result.json") == 2  # once per attempt
    assert len(backend.sandboxes) == 2  # one per attempt; the expression is re-judged on the host


async def test_a_crash_is_reported_with_its_stderr_tail() -> None:
    model = FunctionModel(
        lambda request, number: (
            program(exit=1, stderr="Traceback\nKeyError: 'region'\n")
            if number == 1
            else program({"result.json": {"total": 10}})
        )
    )
    result = await _run(_task(), model)
    assert result.status is TaskStatus.PASSED
    assert result.attempt_log[0].exit_reason is ExitReason.ERROR
    assert "KeyError: 'region'" in model.requests[1].messages[-1].content


async def test_attempts_run_out_as_failed_without_an_error_kind() -> None:
    model = ScriptedModel([program({"result.json": {"total": 9}})], when_exhausted="repeat_last")
    result = await _run(_task(budget=Budget(max_attempts=3)), model)
    assert (result.status, result.attempts) == (TaskStatus.FAILED, 3)
    assert (result.error, result.error_kind) == (None, None)
    assert [c.passed for c in result.checks] == [True, False]
    assert json.loads(result.answer) == {"total": 9}  # the last attempt's, what the checks read


async def test_the_token_budget_ends_the_task_with_kind_budget() -> None:
    model = ScriptedModel([program({"result.json": {"total": 9}})], when_exhausted="repeat_last")
    result = await _run(_task(budget=Budget(max_attempts=50, max_tokens=1)), model)
    assert (result.status, result.attempts) == (TaskStatus.BUDGET_EXHAUSTED, 1)
    assert (result.error, result.error_kind) == ("token budget exhausted", ErrorKind.BUDGET)


async def test_a_script_that_edits_the_input_its_check_reads_fails_reverification(
    tmp_path: Path,
) -> None:
    """Spec drift: the schema check reads an input; the script rewrites it to pass. The
    re-verification reads the original input back, and the check fails there (on the host: a
    schema check runs no code, so no second sandbox is started)."""
    original = tmp_path / "limits.json"
    original.write_text('{"max": 5}')
    check = JsonSchemaCheck(
        path="limits.json", json_schema={"properties": {"max": {"minimum": 10}}}
    )
    model = FunctionModel(lambda request, number: program({"limits.json": {"max": 50}}))
    backend = FakeBackend(interpret)
    task = _task(inputs=(original,), checks=(check,), budget=Budget(max_attempts=2))
    result = await _run(task, model, backend)
    assert result.status is TaskStatus.FAILED
    assert [r.checks_passed for r in result.attempt_log] == [1, 1]  # exit status only
    assert backend.sandboxes[0].files["limits.json"] == b'{"max": 50}'  # it passed there
    assert len(backend.sandboxes) == 2  # one per attempt, none for re-verification
    assert "with the original inputs restored" in model.requests[1].messages[-1].content


async def test_the_prompt_is_counted_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's record and the model's usage are one count (``ModelRequest.prompt_tokens``),
    not two: attempt 2's prompt goes through the tokenizer exactly once."""
    encoded: list[str] = []
    encoding = tokens._encoding()

    class Recording:
        def encode(self, text: str) -> Any:
            encoded.append(text)
            return encoding.encode(text)

    monkeypatch.setattr(tokens, "_encoding", Recording)
    model = FunctionModel(
        lambda request, number: program({"result.json": {"total": 9 + min(number, 2) - 1}})
    )
    result = await _run(_task(), model)
    assert result.status is TaskStatus.PASSED and len(model.requests) == 2
    second = model.requests[1].messages[-1].content
    assert encoded.count(second) == 1
    for record in result.attempt_log:  # the model's usage is the very count the loop recorded
        assert record.prompt_tokens == record.usage.input_tokens > 0


@pytest.mark.parametrize(
    "make", [lambda: ScriptedModel(["x"]), lambda: FunctionModel(lambda r, n: "x")]
)
async def test_test_models_read_the_requests_one_count(make: Any) -> None:
    request = ModelRequest(system=("rules",), messages=(Message(role="user", content="goal"),))
    request.__dict__["prompt_tokens"] = 12_345  # as if counted already: it must not recount
    reply = await make().complete(request)
    assert reply.usage.input_tokens == 12_345 and reply.scripted


async def test_infrastructure_failures_end_in_error_results_with_their_kind() -> None:
    def refuse(spec: SandboxSpec) -> Any:
        raise SandboxStartError("no room for a sandbox", sandbox_id="s-1")

    ok = program({"result.json": {"total": 10}})
    sandbox = await SubAgent(_task(), model=ScriptedModel([ok]), sandbox_factory=refuse).run()
    assert (sandbox.status, sandbox.error_kind) == (TaskStatus.ERROR, ErrorKind.SANDBOX)
    assert sandbox.error == "SandboxStartError: no room for a sandbox"

    def outage(request: ModelRequest, number: int) -> str:
        raise ModelError("HTTP 529 overloaded", status_code=529)

    model = await _run(_task(), FunctionModel(outage))
    assert (model.status, model.error_kind) == (TaskStatus.ERROR, ErrorKind.MODEL)
    assert model.error == "ModelError: HTTP 529 overloaded" and model.attempts == 0


async def test_the_sandbox_starts_with_the_inputs_while_the_model_writes(tmp_path: Path) -> None:
    """The model's latency hides the attempt's sandbox start: by the time the reply comes,
    the sandbox is up with the inputs in it. A reply with no script closes it unused."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    backend = FakeBackend(interpret)
    seen: list[tuple[int, bool, bytes | None]] = []

    async def reply(request: ModelRequest, number: int) -> str | None:
        await anyio.sleep(0.2)  # a remote model's latency
        sandbox = backend.sandboxes[-1]  # none yet: an IndexError fails the task
        seen.append((len(backend.sandboxes), sandbox.started, sandbox.files.get("notes.txt")))
        return None if number == 1 else program({"result.json": {"total": 10}})

    task = _task(inputs=(notes,), budget=Budget(max_attempts=2))
    result = await _run(task, FunctionModel(reply), backend)
    assert result.status is TaskStatus.PASSED and result.attempts == 2
    assert seen == [(1, True, b"hello"), (2, True, b"hello")]
    assert all(sandbox.closed for sandbox in backend.sandboxes)
    assert not backend.sandboxes[0].runs  # the scriptless reply's sandbox ran nothing


async def test_a_failed_start_still_counts_the_replys_tokens() -> None:
    def refuse(spec: SandboxSpec) -> Any:
        raise SandboxStartError("no room for a sandbox", sandbox_id="s-1")

    ok = program({"result.json": {"total": 10}})
    result = await SubAgent(_task(), model=ScriptedModel([ok]), sandbox_factory=refuse).run()
    assert (result.status, result.error_kind) == (TaskStatus.ERROR, ErrorKind.SANDBOX)
    assert result.usage.total_tokens > 0


async def test_a_refused_input_is_an_invalid_task(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (2 * 1024**2))
    task = _task(inputs=(big,), sandbox=SandboxSpec(workspace_size="1m"))
    model = FunctionModel(lambda request, number: pytest.fail("the model must not be asked"))
    backend = FakeBackend(interpret)
    result = await _run(task, model, backend)
    assert (result.status, result.error_kind) == (TaskStatus.ERROR, ErrorKind.INVALID_TASK)
    assert not backend.sandboxes and not model.requests


# -- skills ----------------------------------------------------------------------------------
def _skill_folder(root: Path) -> Path:
    folder = root / "skills" / "totals"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        "---\nname: totals\ndescription: Write totals into result.json.\n"
        "version: 1.0.0\ninputs: {type: object}\n"
        "checks:\n  - kind: expression\n    expr: 'result[\"total\"] > 0'\n"
        "---\nAlways write the total as an integer under the key `total`.\n"
    )
    return root / "skills"


async def test_subagent_resolves_the_tasks_skill_from_skill_dirs(tmp_path: Path) -> None:
    skills = _skill_folder(tmp_path)
    model = ScriptedModel([program({"result.json": {"total": 0}})], when_exhausted="repeat_last")
    agent = SubAgent(
        Task(goal="Total it.", skill="totals", budget=Budget(max_attempts=1)),
        model=model,
        sandbox_factory=FakeBackend(interpret),
        skill_dirs=[skills],
    )
    assert agent.skill is not None and agent.skill.name == "totals"
    assert any("under the key `total`" in block for block in agent.system)
    result = await agent.run()
    assert result.status is TaskStatus.FAILED  # the skill's own check judged it
    assert [c.name for c in result.checks if not c.passed] == ['result["total"] > 0']


async def test_subagent_resolves_a_builtin_skill_by_name() -> None:
    agent = SubAgent(
        Task(goal="Clean it.", skill="data-clean"),
        model=ScriptedModel(["x"]),
        sandbox_factory=FakeBackend(interpret),
    )
    assert agent.skill is not None and agent.skill.name == "data-clean"
    assert len(agent.checks) > 1  # the skill's checks joined the task's


def test_an_unknown_skill_lists_the_known_ones(tmp_path: Path) -> None:
    skills = _skill_folder(tmp_path)
    with pytest.raises(SkillError, match=r"unknown skill 'nope'; available: .*totals"):
        SubAgent(Task(goal="g", skill="nope"), model=ScriptedModel(["x"]), skill_dirs=[skills])


def _my_temp_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{PREFIX}*-{os.getpid()}.*"))


async def test_the_wall_time_budget_stops_a_hung_run_and_leaves_no_temp_dir(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")  # staged in a temp dir for the task's sandboxes
    before = _my_temp_dirs()

    async def hang(run: FakeRun) -> None:
        await anyio.sleep_forever()

    task = _task(inputs=(data,), budget=Budget(max_wall_time_s=0.2))
    backend = FakeBackend(hang)
    result = await _run(task, ScriptedModel([program()]), backend)
    assert (result.status, result.error_kind) == (TaskStatus.BUDGET_EXHAUSTED, ErrorKind.BUDGET)
    assert result.error == "wall-time budget exhausted"
    assert backend.sandboxes[0].closed
    assert _my_temp_dirs() == before  # the staged inputs and the outputs folder: removed
