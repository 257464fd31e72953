"""`execloop mcp` driven by the official MCP client over stdio and over streamable HTTP, and by
the MCP Inspector's CLI: tools with schemas, one session_id keeps state, run_task with a
scripted model passes with progress notifications, a bad argument names its field, and when
the client goes away no sandbox, process or temp dir of the server remains."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx2
import psutil
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from execloop.sandboxes.reaper import LABEL_MANAGED, LABEL_OWNER

pytestmark = pytest.mark.anyio

EXECLOOP = str(Path(sys.executable).with_name("execloop"))
ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / "build" / "inspector"
_DEADLINE_S = 30.0  # for a stopped server's janitor on a loaded machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _servers() -> list[psutil.Process]:
    """This test process's `execloop mcp` children."""
    return [
        child
        for child in psutil.Process().children()
        if "mcp" in (child.cmdline() or []) and child.is_running()
    ]


class Trace:
    """What a server process left: its descendants and temp dirs, and containers it owns."""

    def __init__(self, server: psutil.Process) -> None:
        self.pid = server.pid
        self.processes = server.children(recursive=True)

    def temp_dirs(self) -> list[str]:
        return [n for n in os.listdir(tempfile.gettempdir()) if f"-{self.pid}." in n]

    def containers(self) -> list[str]:
        from execloop.sandboxes.docker_backend import default_client

        owner = f"{socket.gethostname()}:{self.pid}:"
        listed = default_client().containers.list(
            all=True, filters={"label": LABEL_MANAGED}, ignore_removed=True
        )
        return [c.short_id for c in listed if c.labels.get(LABEL_OWNER, "").startswith(owner)]

    def alive(self) -> list[int]:
        alive = []
        for process in self.processes:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process.pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    def assert_clean(self, *, docker: bool = False) -> None:
        """Wait (bounded) for the server's janitor, then nothing may remain."""
        deadline = time.monotonic() + _DEADLINE_S
        while time.monotonic() < deadline:
            left = self.alive() or self.temp_dirs() or (docker and self.containers())
            if not left:
                return
            time.sleep(0.2)
        assert not self.alive(), f"processes of the stopped server remain: {self.alive()}"
        assert not self.temp_dirs(), f"temp dirs remain: {self.temp_dirs()}"
        assert not (docker and self.containers()), f"containers remain: {self.containers()}"


async def _shared_state(client: Client) -> None:
    first = await client.call_tool("run_python", {"code": "x = 41"})
    assert first.is_error is False, first.content
    handle = first.structured_content["session_id"]  # type: ignore[index]
    second = await client.call_tool("run_python", {"code": "print(x + 1)", "session_id": handle})
    assert second.structured_content["stdout"] == "42\n"  # type: ignore[index]
    assert second.structured_content["session_id"] == handle  # type: ignore[index]


def _replies(tmp_path: Path) -> str:
    """Attempt 1 fails, attempt 2 writes result.json with 3 rows."""
    path = tmp_path / "replies.json"
    good = "import json\njson.dump({'rows': 3}, open('result.json', 'w'))\n"
    path.write_text(json.dumps(["raise SystemExit('not yet')", good]))
    return f"scripted:{path}"


async def test_stdio_tools_sessions_tasks_errors_and_nothing_left(tmp_path: Path) -> None:
    params = StdioServerParameters(command=EXECLOOP, args=["mcp", "--backend", "local"])
    progress: list[str | None] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async with Client(params) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"run_python", "run_task", "list_skills", "get_result", "token_report"} <= set(tools)
        assert all(t.input_schema and t.output_schema for t in tools.values())
        await _shared_state(client)
        bad = await client.call_tool("run_python", {"code": "1", "timeout_s": "soon"})
        assert bad.is_error and "timeout_s" in bad.content[0].text  # type: ignore[union-attr]
        task = await client.call_tool(
            "run_task",
            {
                "goal": "write result.json with rows = 3",
                "model": _replies(tmp_path),
                "checks": [{"kind": "expression", "expr": "result['rows'] == 3"}],
            },
            progress_callback=on_progress,
        )
        result = task.structured_content
        assert result is not None and result["status"] == "passed", task.content
        assert result["attempts"] == 2 and result["scripted"] is True
        assert progress == ["attempt 1 of 5", "attempt 2 of 5", "passed after attempt 2 of 5"]
        kept = await client.read_resource(
            f"execloop://tasks/{result['task_id']}/artifacts/result.json"
        )
        blob = kept.contents[0].blob  # type: ignore[union-attr]
        assert json.loads(base64.b64decode(blob)) == {"rows": 3}
        # a session left open: the server must close it when the client goes away
        await client.call_tool("run_python", {"code": "y = 1"})
        (server,) = _servers()
        trace = Trace(server)
        assert trace.processes and trace.temp_dirs()
    trace.assert_clean()


@contextmanager
def _http_server(*args: str) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [EXECLOOP, "mcp", "--backend", "local", "--http", f"127.0.0.1:{port}", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()  # printed once the options were accepted
        assert "execloop MCP server on http://" in banner, banner
        url = f"http://127.0.0.1:{port}/mcp"
        deadline = time.monotonic() + _DEADLINE_S
        while True:  # until uvicorn listens
            try:
                httpx2.get(url, timeout=5)
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the HTTP server never listened"
                time.sleep(0.1)
        yield url
    finally:
        server = psutil.Process(process.pid)
        trace = Trace(server)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        trace.assert_clean()


@asynccontextmanager
async def _client(url: str, token: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    http = create_mcp_http_client(headers=headers)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


async def test_http_with_a_bearer_token() -> None:
    with _http_server("--token", "s3cret") as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            refused = httpx2.post(url, json={}, headers=headers, timeout=10)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        async with _client(url, "s3cret") as client:
            tools = (await client.list_tools()).tools
            assert all(tool.output_schema for tool in tools)
            await _shared_state(client)
            await client.call_tool("run_python", {"code": "left = 'open'"})


async def test_http_on_loopback_a_session_outlives_its_client_until_it_ends() -> None:
    with _http_server() as url:
        async with _client(url, None) as client:
            first = await client.call_tool("run_python", {"code": "x = 41"})
            handle = first.structured_content["session_id"]  # type: ignore[index]
        async with _client(url, None) as client:  # a new client, the same handle
            again = await client.call_tool(
                "run_python", {"code": "print(x + 1)", "session_id": handle}
            )
            assert again.structured_content["stdout"] == "42\n"  # type: ignore[index]
            ended = await client.call_tool(
                "run_python", {"code": "import os; os._exit(3)", "session_id": handle}
            )
            gone = await client.call_tool("run_python", {"code": "x", "session_id": handle})
    outcome = ended.structured_content
    assert outcome is not None and outcome["session_ended"], outcome  # the handle is closed
    assert gone.is_error and "session_id" in gone.content[0].text  # type: ignore[union-attr]


async def test_docker_sessions_over_stdio_leave_no_container() -> None:
    params = StdioServerParameters(command=EXECLOOP, args=["mcp", "--backend", "docker"])
    async with Client(params) as client:
        await _shared_state(client)
        (server,) = _servers()
        trace = Trace(server)
        assert trace.containers()
    trace.assert_clean(docker=True)


def _inspector(*args: str) -> subprocess.CompletedProcess[str]:
    assert (INSPECTOR / "node_modules" / "@modelcontextprotocol" / "inspector").is_dir(), (
        "the MCP Inspector is missing: run scripts/setup.sh"
    )
    command = ["npx", "--prefix", str(INSPECTOR), "--offline", "inspector", "--cli"]
    target = [EXECLOOP, "mcp", "--backend", "local"]
    return subprocess.run(
        [*command, *target, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_mcp_inspector_lists_the_tools_and_runs_python() -> None:
    listed = _inspector("--method", "tools/list", "--strict")  # portable schemas too
    assert listed.returncode == 0, listed.stderr
    tools = {tool["name"]: tool for tool in json.loads(listed.stdout)["tools"]}
    assert "outputSchema" in tools["run_python"] and "inputSchema" in tools["run_task"]
    called = _inspector(
        "--method", "tools/call", "--tool-name", "run_python", "--tool-arg", "code=print(6*7)"
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["structuredContent"]["stdout"] == "42\n"
