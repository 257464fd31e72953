"""The Claude Agent SDK's in-process server (no CLI here): the official MCP client on the
lowlevel ``Server`` it is handed, on FakeBackend sandboxes; the missing extra is named."""

from __future__ import annotations

import importlib
import sys

import pytest
from mcp import Client

from execloop.errors import MissingExtraError
from execloop.runtime.executors.claude_agent import TOOLS, allowed_tools, execloop_sdk_server
from execloop.sandboxes import SandboxSpec
from execloop.testing import FakeBackend, FakeRun

pytestmark = pytest.mark.anyio


def _handler(run: FakeRun) -> str | None:
    namespace = run.sandbox.__dict__.setdefault("namespace", {})
    if run.code.startswith("print("):
        return f"{namespace[run.code[6:-1]]}\n"
    name, _, value = run.code.partition("=")
    namespace[name.strip()] = value.strip()
    return None


async def test_the_sdk_server_serves_the_execloop_tools_with_state_and_field_errors() -> None:
    backend = FakeBackend(_handler)
    config = execloop_sdk_server(spec=SandboxSpec(backend="local"), sandbox_factory=backend)
    assert config["type"] == "sdk" and config["name"] == "execloop"
    async with Client(config["instance"]) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        first = await client.call_tool("run_python", {"code": "x = 42"})
        handle = first.structured_content["session_id"]  # type: ignore[index]
        second = await client.call_tool("run_python", {"code": "print(x)", "session_id": handle})
        bad = await client.call_tool("run_python", {"code": "x", "memory": "lots"})
        unknown = await client.call_tool("run_python", {"code": "x", "session_id": "gone"})
    assert set(tools) == set(TOOLS)
    assert all(tool.output_schema for tool in tools.values())
    assert second.structured_content["stdout"] == "42\n"  # type: ignore[index]
    assert bad.is_error and "memory" in bad.content[0].text  # type: ignore[union-attr]
    assert unknown.is_error and "session_id" in unknown.content[0].text  # type: ignore[union-attr]
    assert backend.sandboxes and all(s.closed for s in backend.sandboxes)  # the lifespan ended


def test_both_servers_take_the_same_keywords_and_refuse_unknown_ones() -> None:
    from execloop.errors import ConfigError
    from execloop.runtime.mcp_server import build_server

    limited = execloop_sdk_server(max_concurrency=1, host_paths=False)  # build_server's too
    assert limited["name"] == "execloop"
    for make in (build_server, execloop_sdk_server):
        with pytest.raises(ConfigError, match=r"unknown server keyword\(s\) \['max_session'\]"):
            make(max_session=3)


def test_allowed_tools_are_claude_code_names() -> None:
    assert allowed_tools(tools=["run_python"]) == ["mcp__execloop__run_python"]
    assert len(allowed_tools()) == len(TOOLS)
    with pytest.raises(ValueError, match="not execloop tools"):
        allowed_tools(tools=["bash"])


def test_without_the_extra_the_import_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "claude_agent_sdk", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "execloop.runtime.executors.claude_agent")
    with pytest.raises(MissingExtraError, match=r"pip install 'execloop\[claude-agent\]'") as info:
        importlib.import_module("execloop.runtime.executors.claude_agent")
    assert info.value.extra == "claude-agent"
