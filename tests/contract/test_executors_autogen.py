"""The AutoGen executor driven by AutoGen's own ``CodeExecutorAgent`` and its replay model
(no network): state across turns, a failing block as data, other languages refused, the
exit-code mapping, restart and serialization, and nothing left behind after ``stop()``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from autogen_agentchat.agents import (
    ApprovalRequest,
    ApprovalResponse,
    AssistantAgent,
    CodeExecutorAgent,
)
from autogen_agentchat.messages import CodeExecutionEvent, ToolCallExecutionEvent
from autogen_core import CancellationToken, FunctionCall
from autogen_core.code_executor import CodeBlock
from autogen_core.models import CreateResult, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient
from autogen_ext.tools.code_execution import PythonCodeExecutionTool

from execloop.runtime.executors.autogen import ExecloopCodeExecutor
from tests.contract.backends import leftovers

pytestmark = pytest.mark.anyio


def _approve(request: ApprovalRequest) -> ApprovalResponse:
    return ApprovalResponse(approved=True, reason="test")


async def _turn(agent: CodeExecutorAgent, task: str) -> CodeExecutionEvent:
    # run() keeps only the final message; the stream carries the execution events
    events = [m async for m in agent.run_stream(task=task) if isinstance(m, CodeExecutionEvent)]
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize("backend", ["local", "docker"])
async def test_code_executor_agent_runs_in_one_stateful_sandbox(
    backend: str, docker_client: Any
) -> None:
    replies = [
        "```python\nx = 20\nprint('x is set')\n```",
        "x is set.",
        "```python\nprint('state', x * 2)\n```",
        "It printed 40.",
        "```python\nprint('before')\n1 / 0\n```",
        "It failed.",
        "```sh\necho hi\n```",
        "Shell was refused.",
    ]
    executor = ExecloopCodeExecutor(spec={"backend": backend, "timeout_s": 30})
    async with executor:
        agent = CodeExecutorAgent(
            "coder",
            code_executor=executor,
            model_client=ReplayChatCompletionClient(replies),
            approval_func=_approve,
        )
        first = await _turn(agent, "set x")
        assert first.result.exit_code == 0
        assert first.result.output == "x is set\n"
        second = await _turn(agent, "double it")
        assert (second.result.exit_code, second.result.output) == (0, "state 40\n")

        failed = await _turn(agent, "divide")
        assert failed.result.exit_code == 1
        assert "[execloop: error, exit status 1]" in failed.result.output
        assert "before" in failed.result.output
        assert "ZeroDivisionError" in failed.result.output

        shell = await _turn(agent, "shell")
        assert shell.result.exit_code == 1
        assert "unsupported language 'sh'" in shell.result.output
        assert executor.session.sandbox is not None
        session_id = executor.session.sandbox.session_id
    assert executor.session.sandbox is None
    assert leftovers(session_id, docker_client) == []


async def test_first_failing_block_stops_the_rest_and_restart_forgets() -> None:
    token = CancellationToken()
    async with ExecloopCodeExecutor(spec={"backend": "local", "timeout_s": 30}) as executor:
        result = await executor.execute_code_blocks(
            [
                CodeBlock("y = 1\nprint('one')", "python"),
                CodeBlock("raise SystemExit(3)", "python"),
                CodeBlock("print('never')", "python"),
            ],
            token,
        )
        assert result.exit_code == 3
        assert "one" in result.output
        assert "never" not in result.output
        assert [r.exit_reason.value for r in result.results] == ["ok", "error"]

        await executor.restart()
        after = await executor.execute_code_blocks([CodeBlock("print(y)", "py")], token)
        assert after.exit_code == 1
        assert "NameError" in after.output


async def test_timeout_maps_to_124_and_the_next_block_gets_a_new_sandbox() -> None:
    token = CancellationToken()
    spec = {"backend": "local", "timeout_s": 1}
    async with ExecloopCodeExecutor(spec=spec, max_output_chars=2000) as executor:
        await executor.execute_code_blocks([CodeBlock("z = 5", "python")], token)
        slow = await executor.execute_code_blocks(
            [CodeBlock("import time\ntime.sleep(30)", "python")], token
        )
        assert slow.exit_code == 124
        assert slow.results[0].exit_reason.value == "timeout"
        assert "[execloop: timeout, exit status 124]" in slow.output

        loud = await executor.execute_code_blocks(
            [CodeBlock("print('x' * 100_000)\nprint(z)", "python")], token
        )
        assert "new sandbox, earlier state is gone" in loud.output
        assert "NameError" in loud.output  # z died with the old sandbox
        assert len(loud.output) <= 2000
        assert "characters omitted" in loud.output
        assert executor.session.starts == 2


async def test_assistant_agent_calls_it_as_a_tool() -> None:
    """AutoGen's other path: ``PythonCodeExecutionTool`` called by an ``AssistantAgent``."""
    calls = [
        CreateResult(
            finish_reason="function_calls",
            content=[FunctionCall(id=str(n), name="CodeExecutor", arguments=json.dumps(args))],
            usage=RequestUsage(prompt_tokens=0, completion_tokens=0),
            cached=False,
        )
        for n, args in enumerate([{"code": "k = 5\nprint(k * 24)"}, {"code": "print(k / 0)"}])
    ]
    model = ReplayChatCompletionClient(
        [calls[0], "120", calls[1], "failed"],
        model_info=ModelInfo(
            vision=False,
            function_calling=True,
            json_output=False,
            family="unknown",
            structured_output=False,
        ),
    )
    async with ExecloopCodeExecutor(spec={"backend": "local", "timeout_s": 30}) as executor:
        agent = AssistantAgent(
            "assistant",
            model_client=model,
            tools=[PythonCodeExecutionTool(executor)],
            reflect_on_tool_use=True,
        )
        results = []
        for task in ("compute", "divide"):
            async for event in agent.run_stream(task=task):
                if isinstance(event, ToolCallExecutionEvent):
                    results.extend(event.content)
    ok, failed = results
    assert (ok.content, ok.is_error) == ("120\n", False)
    assert "ZeroDivisionError" in failed.content
    assert "[execloop: error, exit status 1]" in failed.content


async def test_component_config_round_trips() -> None:
    executor = ExecloopCodeExecutor(spec={"backend": "local", "timeout_s": 7})
    model = executor.dump_component()
    assert model.provider == "execloop.runtime.executors.autogen.ExecloopCodeExecutor"
    loaded = ExecloopCodeExecutor.load_component(model)
    assert loaded.session.spec == executor.session.spec
    assert not loaded.session.started
