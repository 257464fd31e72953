"""The Claude Agent SDK's whole loop, offline: its bundled Claude Code CLI talks to a loopback
streaming (SSE) fake of the Messages API, calls execloop's run_python in process (local
backend), and gets the sandbox's output back as the tool result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

from execloop.runtime.executors.claude_agent import allowed_tools, execloop_sdk_server
from execloop.sandboxes import SandboxSpec
from tests.fakes.anthropic_server import FakeAnthropicServer

pytestmark = pytest.mark.anyio

CODE = "x = 6 * 7\nprint(f'x = {x}')"


def _tool_results(request_body: dict[str, Any]) -> list[dict[str, Any]]:
    last = request_body["messages"][-1]
    content = last["content"] if isinstance(last["content"], list) else []
    return [block for block in content if block.get("type") == "tool_result"]


async def test_claude_code_runs_python_in_execloop(tmp_path: Path) -> None:
    stderr: list[str] = []
    with FakeAnthropicServer() as fake:
        fake.push_reply(
            text="I will run it in execloop.",
            tool_name="mcp__execloop__run_python",
            tool_input={"code": CODE},
        )
        fake.push_reply(text="x is 42.")
        options = ClaudeAgentOptions(
            mcp_servers={"execloop": execloop_sdk_server(spec=SandboxSpec(backend="local"))},
            allowed_tools=allowed_tools(tools=["run_python"]),  # root refuses bypassPermissions
            tools=[],
            max_turns=4,
            cwd=str(tmp_path),
            stderr=stderr.append,
            env={
                "ANTHROPIC_BASE_URL": fake.base_url,
                "ANTHROPIC_API_KEY": "sk-fake",
                "HOME": str(tmp_path),
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
            },
        )
        messages = [message async for message in query(prompt="What is 6 * 7?", options=options)]
        requests = [r for r in fake.requests if r.path == "/v1/messages"]
    final = messages[-1]
    assert isinstance(final, ResultMessage), stderr[-20:]
    assert final.subtype == "success" and not final.is_error, (final, stderr[-20:])
    assert len(requests) == 2
    assert requests[0].body["stream"] is True
    assert "mcp__execloop__run_python" in {tool["name"] for tool in requests[0].body["tools"]}
    (result,) = _tool_results(requests[1].body)
    text = json.dumps(result["content"])
    assert "x = 42" in text and "session_id" in text and not result.get("is_error")
