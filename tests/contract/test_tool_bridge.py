"""The tool bridge on real Docker: host tools called from sandboxed scripts, checked and audited."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from execloop import DockerSandbox, ExitReason, SandboxSpec
from execloop.runtime.bridge import ToolBridge, ToolFailure, ToolRegistry
from execloop.sandboxes import Capability, create_sandbox

pytestmark = pytest.mark.anyio

ECHO_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_echo_server.py"
TABLE = {f"k{i}": 10 * i for i in range(5)}


def host_registry(notes: list[str]) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def lookup(key: str) -> int:
        """The value stored under ``key``."""
        return TABLE[key]

    @registry.tool
    def add(a: int, b: int) -> int:
        """``a + b``."""
        return a + b

    @registry.tool
    async def record(note: str) -> int:
        """Keep ``note`` on the host; returns how many notes there are."""
        notes.append(note)
        return len(notes)

    @registry.tool
    def explode(reason: str) -> str:
        """Always raises."""
        raise ValueError(reason)

    @registry.tool
    async def hang() -> None:
        """Never returns."""
        await anyio.sleep(3600)

    @registry.tool
    def secret() -> str:
        """Registered on the host, but no task here allows it."""
        return "the host's secret"

    return registry


@asynccontextmanager
async def bridged(
    registry: ToolRegistry, allow: list[str], **options: Any
) -> AsyncIterator[tuple[DockerSandbox, ToolBridge]]:
    async with (
        DockerSandbox() as sandbox,
        ToolBridge(sandbox, registry, allow=allow, **options) as bridge,
    ):
        yield sandbox, bridge


LOOP = """
import subprocess, sys
from execloop_tools import add, lookup, record

total = 0
for i in range(50):
    total = add(total, lookup(f"k{i % 5}"))
    count = record(f"note {i}")
print(total, count)
# processes the script starts inherit the bridge (PYTHONPATH and the token are in the env)
child = "from execloop_tools import add; print(add(2, 3))"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
"""


async def test_three_tools_in_a_loop_of_50_are_correct_and_audited() -> None:
    notes: list[str] = []
    registry = host_registry(notes)
    async with bridged(registry, ["add", "lookup", "record"]) as (sandbox, bridge):
        await sandbox.upload({"main.py": LOOP})
        result = await sandbox.exec_file("main.py")
        artifacts = [a.path for a in await sandbox.artifacts()]
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert result.stdout.split() == ["1000", "50", "5"]
    assert notes == [f"note {i}" for i in range(50)]
    trace = bridge.trace[:150]
    assert len(bridge.trace) == 151  # + the child process's call
    assert [r.tool for r in trace] == ["lookup", "add", "record"] * 50
    assert all(r.ok and r.error is None for r in bridge.trace)
    assert all(r.argument_bytes > 0 and r.result_bytes > 0 for r in trace)
    assert all(r.duration_s > 0 for r in trace)
    assert trace[0].argument_bytes == len('{"key":"k0"}')
    assert trace[1].result_bytes == 1  # 0 + 0
    assert bridge.calls_used == 151
    assert artifacts == ["main.py"]  # the bridge leaves nothing in the workspace


async def test_the_tool_socket_belongs_to_the_sandbox_user_alone() -> None:
    async with bridged(host_registry([]), ["add"]) as (sandbox, _):
        assert sandbox.socket_dir is not None
        info = os.stat(sandbox.socket_dir / "tools.sock")
        owner = sandbox.socket_owner or (os.geteuid(), os.getegid())
        called = await sandbox.exec("from execloop_tools import add\nprint(add(1, 2))")
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == owner
    assert called.stdout == "3\n", called.stderr


async def test_calls_from_threads_are_served_concurrently() -> None:
    registry = ToolRegistry()
    inflight = peak = 0

    @registry.tool
    async def slow(i: int) -> int:
        nonlocal inflight, peak
        inflight += 1
        peak = max(peak, inflight)
        await anyio.sleep(0.1)
        inflight -= 1
        return i * i

    code = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from execloop_tools import slow\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    print(sum(pool.map(slow, range(32))))\n"
    )
    async with bridged(registry, ["slow"]) as (sandbox, bridge):
        result = await sandbox.exec(code)
    assert result.stdout == f"{sum(i * i for i in range(32))}\n", result.stderr
    assert peak > 1
    assert len(bridge.trace) == 32


REFUSALS = """
import os
import execloop_tools
from execloop_tools import ToolError, add

def attempt(label, fn, *args):
    try:
        print(label, "->", fn(*args))
    except ToolError as exc:
        print(label, exc.kind, "|", exc)

attempt("allowlist", execloop_tools.call, "secret", {})
attempt("schema", add, 1, "two")
attempt("extra", execloop_tools.call, "add", {"a": 1, "b": 2, "c": 3})
good = os.environ["EXECLOOP_TOOLS_TOKEN"]
os.environ["EXECLOOP_TOOLS_TOKEN"] = "not-the-token"
attempt("token", add, 1, 2)
os.environ["EXECLOOP_TOOLS_TOKEN"] = good
attempt("ok", add, 1, 2)
attempt("budget", add, 3, 4)
add(5, 6)  # uncaught: the script fails with the message
"""


async def test_allowlist_schema_token_and_budget_refusals_are_clear_tool_errors() -> None:
    registry = host_registry([])
    async with bridged(registry, ["add", "lookup"], call_budget=4) as (sandbox, bridge):
        result = await sandbox.exec(REFUSALS)
    lines = result.stdout.splitlines()
    assert lines == [
        "allowlist not_allowed | tool 'secret' is not in this task's allowlist: ['add', 'lookup']",
        "schema bad_arguments | arguments for 'add' do not match its schema: "
        "'two' is not of type 'integer' at $.b",
        "extra bad_arguments | arguments for 'add' do not match its schema: "
        "Additional properties are not allowed ('c' was unexpected) at $",
        "token bad_token | bad token: this sandbox's tool bridge refused the call",
        "ok -> 3",
        "budget budget_exhausted | call budget of 4 exhausted: this sandbox may make no "
        "more tool calls",
    ], result.stderr
    assert result.exit_reason is ExitReason.ERROR
    assert result.stderr.rstrip().endswith(
        "execloop_tools.ToolError: call budget of 4 exhausted: this sandbox may make no more "
        "tool calls"
    )
    kinds = [(r.tool, r.error_type) for r in bridge.trace]
    assert kinds == [
        ("secret", "not_allowed"),
        ("add", "bad_arguments"),
        ("add", "bad_arguments"),
        ("add", "bad_token"),
        ("add", None),
        ("add", "budget_exhausted"),
        ("add", "budget_exhausted"),
    ]
    assert bridge.calls_used == 4  # the bad token did not count


async def test_a_raising_tool_and_a_hanging_tool_surface_as_tool_errors() -> None:
    code = (
        "from execloop_tools import ToolError, explode, hang, lookup\n"
        "for fn, args in ((explode, ('disk on fire',)), (hang, ()), (lookup, ('nope',))):\n"
        "    try:\n"
        "        fn(*args)\n"
        "    except ToolError as exc:\n"
        "        print(exc.kind, '|', exc)\n"
    )
    registry = host_registry([])
    allow = ["explode", "hang", "lookup"]
    async with bridged(registry, allow, call_timeout_s=0.5) as (sandbox, bridge):
        started = time.monotonic()
        result = await sandbox.exec(code)
        elapsed = time.monotonic() - started
    assert result.stdout.splitlines() == [
        "tool_error | tool 'explode' raised ValueError: disk on fire",
        "timeout | tool 'hang' timed out after 0.5 s",
        "tool_error | tool 'lookup' raised KeyError: 'nope'",
    ], result.stderr
    assert elapsed < 30  # the hang was cut, not waited out
    assert [r.error_type for r in bridge.trace] == ["tool_error", "timeout", "tool_error"]
    assert bridge.trace[1].duration_s >= 0.5


async def test_tools_stop_working_when_the_bridge_closes() -> None:
    registry = host_registry([])
    async with DockerSandbox() as sandbox:
        async with ToolBridge(sandbox, registry, allow=["add"]):
            first = await sandbox.exec("from execloop_tools import add\nprint(add(1, 1))")
        after = await sandbox.exec("add(2, 2)")
    assert first.stdout == "2\n"
    assert after.exit_reason is ExitReason.ERROR
    assert "is unreachable" in after.stderr


async def test_the_sandbox_can_neither_change_the_module_nor_find_the_token_in_a_file() -> None:
    code = (
        "import os, execloop_tools\n"
        "path = execloop_tools.__file__\n"
        "print(path, os.access(path, os.W_OK))\n"
        "print(os.environ['EXECLOOP_TOOLS_TOKEN'] in open(path).read())\n"
    )
    async with bridged(host_registry([]), ["add"]) as (sandbox, _):
        result = await sandbox.exec(code)
    assert result.stdout.split() == ["/run/execloop/lib/execloop_tools.py", "False", "False"]


MCP_SCRIPT = """
import os
from execloop_tools import ToolError, echo_echo, echo_fail, echo_key_suffix, echo_stats
print(echo_echo("ab", times=3))
print(echo_stats([1, 2, 3.5]))
print(echo_key_suffix())
print("ECHO_API_KEY" in os.environ)
try:
    echo_fail("nope")
except ToolError as exc:
    print(exc)
"""
MCP_EXPECTED = [
    "ababab",
    "{'count': 3, 'total': 6.5}",
    "1234",
    "False",
    "tool 'echo_fail' failed: Error executing tool fail: nope",
]


async def test_a_tool_of_an_mcp_server_over_stdio_is_called_from_the_sandbox() -> None:
    async with ToolRegistry() as registry:
        tools = await registry.add_mcp_stdio(
            sys.executable,
            [str(ECHO_SERVER)],
            env={"ECHO_API_KEY": "sk-test-1234"},  # stays with the server, on the host
            prefix="echo_",
        )
        assert sorted(t.name for t in tools) == [
            "echo_echo",
            "echo_fail",
            "echo_key_suffix",
            "echo_stats",
        ]
        async with bridged(registry, registry.names) as (sandbox, bridge):
            result = await sandbox.exec(MCP_SCRIPT)
            api = bridge.api
    assert result.stdout.splitlines() == MCP_EXPECTED, result.stderr
    assert "def echo_echo(text: str, *, times: int = 1) -> str:" in api
    assert [r.ok for r in bridge.trace] == [True, True, True, False]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def http_echo_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(ECHO_SERVER), "--http", str(port)],
        env={"ECHO_API_KEY": "sk-http-1234", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "the MCP HTTP server exited"
                assert time.monotonic() < deadline, "the MCP HTTP server did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_a_tool_of_an_mcp_server_over_streamable_http_is_called(
    http_echo_server: str,
) -> None:
    async with ToolRegistry() as registry:
        await registry.add_mcp_http(http_echo_server, prefix="echo_")
        async with bridged(registry, registry.names) as (sandbox, _):
            result = await sandbox.exec(MCP_SCRIPT)
    assert result.stdout.splitlines() == MCP_EXPECTED, result.stderr


async def test_a_tool_failure_raised_on_the_host_is_shown_verbatim() -> None:
    registry = ToolRegistry()

    @registry.tool
    def quota(user: str) -> int:
        raise ToolFailure(f"user {user!r} has no quota left")

    async with bridged(registry, ["quota"]) as (sandbox, _):
        result = await sandbox.exec("from execloop_tools import quota\nquota('ann')")
    assert result.stderr.rstrip().endswith(
        "execloop_tools.ToolError: tool 'quota' failed: user 'ann' has no quota left"
    )


@pytest.mark.parametrize("placement", ["docker", "bubblewrap"])
async def test_a_jupyter_kernel_calls_host_tools_on_either_placement(placement: str) -> None:
    notes: list[str] = []
    spec = SandboxSpec(backend="jupyter", placement=placement)  # type: ignore[arg-type]
    async with (
        create_sandbox(spec) as sandbox,
        ToolBridge(sandbox, host_registry(notes), allow=["add", "lookup", "record"]) as bridge,
    ):
        assert Capability.TOOLS in sandbox.capabilities and sandbox.control_dir is not None
        await sandbox.upload({"main.py": LOOP})
        from_file = await sandbox.exec_file("main.py")
        from_cell = await sandbox.exec("from execloop_tools import add\nprint(add(40, 2))")
        refused = await sandbox.exec("from execloop_tools import lookup\nlookup('nope')")
        artifacts = [a.path for a in await sandbox.artifacts()]
    assert from_file.exit_reason is ExitReason.OK, from_file.stderr
    assert from_file.stdout.split() == ["1000", "50", "5"]  # the child process's call included
    assert from_cell.stdout == "42\n", from_cell.stderr
    assert refused.exit_reason is ExitReason.ERROR and "ToolError" in refused.stderr
    assert notes == [f"note {i}" for i in range(50)]
    assert [r.tool for r in bridge.trace[:150]] == ["lookup", "add", "record"] * 50
    assert bridge.calls_used == 153 and not bridge.trace[-1].ok
    assert artifacts == ["main.py"]  # the bridge leaves nothing in the workspace


@pytest.mark.parametrize("placement", ["docker", "bubblewrap"])
async def test_the_bridge_reattaches_after_a_jupyter_restart(placement: str) -> None:
    notes: list[str] = []
    spec = SandboxSpec(backend="jupyter", placement=placement)  # type: ignore[arg-type]
    call = "from execloop_tools import record\nprint(record('{}'))"
    async with (
        create_sandbox(spec) as sandbox,
        ToolBridge(sandbox, host_registry(notes), allow=["record"], call_budget=2) as bridge,
    ):
        before = await sandbox.exec(call.format("before"))
        old_dir = sandbox.control_dir
        await sandbox.restart()  # a fresh kernel in a new control directory
        assert sandbox.control_dir != old_dir and (sandbox.control_dir / "tools.sock").exists()
        after = await sandbox.exec(call.format("after"))
        over_budget = await sandbox.exec(call.format("third"))
    assert (before.stdout, after.stdout) == ("1\n", "2\n"), after.stderr
    assert "ToolError" in over_budget.stderr  # one budget across the restart
    assert notes == ["before", "after"]
    assert [r.ok for r in bridge.trace] == [True, True, False]
    assert sandbox.control_dir is None  # closed: nothing of the bridge is left
