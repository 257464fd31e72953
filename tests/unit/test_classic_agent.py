"""The classic agent against the replay model: real SDK clients, real HTTP on 127.0.0.1, real
tools (Python and an MCP server), usage counted by the replay server from each request."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from execloop.errors import ConfigError
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.bridge.tool import render_text
from execloop.runtime.classic_agent import ClassicAgent, ClassicRun
from execloop.runtime.models.anthropic_model import AnthropicModel
from execloop.runtime.models.openai_model import OpenAIModel
from execloop.testing import FinalText, ReplayModelServer, ScriptedModel, ToolUse

pytestmark = pytest.mark.anyio
ECHO_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "mcp_echo_server.py"


def _registry(store: dict[str, Any]) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def read_note(name: str) -> dict[str, Any]:
        """Read a note."""
        return {"name": name, "text": store[name]}

    @registry.tool
    def write_note(name: str, text: str) -> str:
        """Write a note."""
        store[name] = text
        return f"saved {name}"

    return registry


PLAN = [
    ToolUse("read_note", {"name": "todo"}),
    ToolUse("write_note", {"name": "todo", "text": "buy milk; call Ann"}),
    ToolUse("read_note", {"name": "todo"}),
    FinalText("The note now says: buy milk; call Ann."),
]


async def _run(server: ReplayModelServer, protocol: str, store: dict[str, Any]) -> ClassicRun:
    server.plan(PLAN)
    model: AnthropicModel | OpenAIModel
    if protocol == "anthropic":
        model = AnthropicModel(model="replay", base_url=server.base_url, api_key="k")
    else:
        model = OpenAIModel(model="replay", base_url=server.openai_base_url)
    async with model:
        agent = ClassicAgent.from_registry(
            _registry(store), ["read_note", "write_note"], model=model
        )
        return await agent.run("Add 'call Ann' to the todo note.")


async def test_anthropic_run_is_the_formula_of_its_measured_pieces() -> None:
    store = {"todo": "buy milk"}
    with ReplayModelServer() as server:
        run = await _run(server, "anthropic", store)
        bodies = [r.body for r in server.requests]
    assert store == {"todo": "buy milk; call Ann"}  # the tools really ran
    assert run.finished and run.answer == "The note now says: buy milk; call Ann."
    assert [c.tool for c in run.calls] == ["read_note", "write_note", "read_note"]
    assert run.calls[0].text == render_text({"name": "todo", "text": "buy milk"})
    formula = run.formula()
    assert run.usage.total_input_tokens == formula.uncached.input_tokens
    assert run.usage.cache_read_input_tokens == formula.cached.cache_read_input_tokens > 0
    assert run.usage.cache_creation_input_tokens == formula.cached.cache_creation_input_tokens
    assert run.usage.output_tokens == formula.uncached.output_tokens
    # the whole conversation every turn, one call per turn, the breakpoint moved forward
    assert [len(b["messages"]) for b in bodies] == [1, 3, 5, 7]
    assert bodies[0]["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert [t["name"] for t in bodies[0]["tools"]] == ["read_note", "write_note"]
    last = bodies[1]["messages"][-1]["content"][-1]
    assert last["type"] == "tool_result" and "cache_control" in last
    assert "cache_control" not in bodies[2]["messages"][2]["content"][-1]


async def test_openai_run_counts_the_same_input_and_reads_the_prefix() -> None:
    store = {"todo": "buy milk"}
    with ReplayModelServer() as server:
        run = await _run(server, "openai", store)
        bodies = [r.body for r in server.requests]
    assert store["todo"] == "buy milk; call Ann"
    formula = run.formula()
    assert run.usage.total_input_tokens == formula.uncached.input_tokens
    assert run.usage.cache_read_input_tokens == formula.cached.cache_read_input_tokens
    assert bodies[0]["parallel_tool_calls"] is False
    assert [m["role"] for m in bodies[-1]["messages"]] == [
        "system",
        "user",
        *["assistant", "tool"] * 3,
    ]
    assert run.cumulative_input()[-1] == run.usage.total_input_tokens


async def test_mcp_tool_result_is_read_as_the_servers_text() -> None:
    async with ToolRegistry() as registry:
        await registry.add_mcp_stdio(sys.executable, [str(ECHO_SERVER)], prefix="echo_")
        with ReplayModelServer() as server:
            server.plan([ToolUse("echo_stats", {"values": [1, 2.5]}), FinalText("3.5")])
            async with AnthropicModel(model="replay", base_url=server.base_url, api_key="k") as m:
                agent = ClassicAgent.from_registry(registry, ["echo_stats"], model=m)
                run = await agent.run("Sum 1 and 2.5.")
            sent = server.requests[1].body["messages"][-1]["content"][0]["content"]
    assert json.loads(run.calls[0].text) == {"count": 2, "total": 3.5}
    assert sent == run.calls[0].text  # the model read the server's own text content
    assert run.calls[0].text != '{"count":2,"total":3.5}'  # not the compact JSON value


async def test_bad_calls_become_error_results_and_turns_are_bounded() -> None:
    with ReplayModelServer() as server:
        server.plan([ToolUse("nope", {}), ToolUse("read_note", {"name": 3})])
        async with AnthropicModel(model="replay", base_url=server.base_url, api_key="k") as m:
            agent = ClassicAgent.from_registry(_registry({}), ["read_note"], model=m, max_turns=2)
            run = await agent.run("Read it.")
        results = [r.body["messages"][-1]["content"][0] for r in server.requests[1:]]
    assert not run.finished and [c.ok for c in run.calls] == [False, False]
    assert "no tool named 'nope'" in run.calls[0].text
    assert "is not of type 'string'" in run.calls[1].text
    assert results[0]["is_error"] is True


def test_a_scripted_model_is_refused_with_what_to_use() -> None:
    agent = ClassicAgent(model=ScriptedModel(["print(1)"]), tools=[])
    with pytest.raises(ConfigError, match="ReplayModelServer"):
        anyio.run(agent.run, "hi")
