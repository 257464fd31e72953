"""The LangGraph tool in a real LangGraph agent graph (a model node, ``ToolNode``,
``tools_condition``, a checkpointer) whose model is LangChain's fake chat model (no network):
state per thread, isolation between threads, a failing script as data, the bound on threads,
and nothing left behind after close."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from execloop.runtime.executors.langgraph import ThreadSandboxes
from tests.contract.backends import leftovers

pytestmark = pytest.mark.anyio


def _replies(*codes: str) -> Iterator[AIMessage]:
    """For each code: a tool call running it, then a final answer."""
    for n, code in enumerate(codes):
        call = {"name": "run_python", "args": {"code": code}, "id": f"c{n}", "type": "tool_call"}
        yield AIMessage(content="", tool_calls=[call])
        yield AIMessage(content=f"done {n}")


def _graph(model: GenericFakeChatModel, sandboxes: ThreadSandboxes) -> CompiledStateGraph[Any]:
    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([sandboxes.tool]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=InMemorySaver())


async def _ask(graph: CompiledStateGraph[Any], thread: str) -> ToolMessage:
    config = {"configurable": {"thread_id": thread}}
    state = await graph.ainvoke({"messages": [HumanMessage("go")]}, config)
    tool_message = state["messages"][-2]
    assert isinstance(tool_message, ToolMessage)
    return tool_message


@pytest.mark.parametrize("backend", ["local", "docker"])
async def test_graph_keeps_one_sandbox_per_thread(backend: str, docker_client: Any) -> None:
    model = GenericFakeChatModel(
        messages=_replies("x = 5\nprint(x)", "x *= 2\nprint(x)", "print(x)", "print(x / 0)")
    )
    async with ThreadSandboxes(spec={"backend": backend, "timeout_s": 30}) as sandboxes:
        graph = _graph(model, sandboxes)
        first = await _ask(graph, "t1")
        assert (first.content, first.artifact["exit_reason"]) == ("5\n", "ok")
        second = await _ask(graph, "t1")
        assert second.content == "10\n"

        other = await _ask(graph, "t2")  # another conversation: x is not defined there
        assert other.artifact["exit_reason"] == "error"
        assert other.artifact["exit_code"] == 1
        assert "NameError" in other.content
        assert other.content.startswith("[execloop: error, exit status 1]")

        failed = await _ask(graph, "t1")
        assert "ZeroDivisionError" in failed.artifact["stderr"]
        assert "ZeroDivisionError" in failed.content
        assert sandboxes.threads == ["t2", "t1"]
        sessions = [sandboxes.session(thread) for thread in ("t1", "t2")]
        ids = [s.sandbox.session_id for s in sessions if s is not None and s.sandbox is not None]
        assert len(ids) == 2
    assert sandboxes.threads == []
    for session_id in ids:
        assert leftovers(session_id, docker_client) == []


async def test_past_max_threads_the_oldest_thread_loses_its_sandbox(docker_client: Any) -> None:
    def call(code: str) -> dict[str, Any]:
        return {"name": "run_python", "args": {"code": code}, "id": "c", "type": "tool_call"}

    async with ThreadSandboxes(spec={"backend": "local"}, max_threads=1) as sandboxes:
        tool = sandboxes.tool
        await tool.ainvoke(call("a = 1"), {"configurable": {"thread_id": "t1"}})
        first = sandboxes.session("t1")
        assert first is not None and first.sandbox is not None
        old_id = first.sandbox.session_id
        await tool.ainvoke(call("print('t2')"), {"configurable": {"thread_id": "t2"}})
        assert sandboxes.threads == ["t2"]
        assert leftovers(old_id, docker_client) == []

        back = await tool.ainvoke(call("print(a)"), {"configurable": {"thread_id": "t1"}})
        assert "this thread's sandbox was closed to make room (max_threads=1)" in back.content
        assert "NameError" in back.content

        shared = await tool.ainvoke(call("print('no thread')"), {})
        assert shared.content == "no thread\n"
        assert sandboxes.threads == ["default"]
