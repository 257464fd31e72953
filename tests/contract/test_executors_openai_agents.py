"""The OpenAI Agents SDK function tool driven by the SDK's ``Runner`` and its deterministic
``agents.testing.ScriptedModel`` (no network, tracing off): state across tool calls and runs
sharing a context, a failing script as tool output, a context of the wrong type refused, and
nothing left behind once the context is closed."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, RunResult, ToolCallOutputItem, UserError
from agents.testing import ScriptedModel, assistant_message, function_call

from execloop.errors import ConfigError
from execloop.runtime.executors.openai_agents import SandboxContext, run_python, run_with_sandbox
from tests.contract.backends import leftovers

pytestmark = pytest.mark.anyio

NO_TRACING = RunConfig(tracing_disabled=True)


def _agent(*steps: list[Any]) -> Agent[SandboxContext]:
    model = ScriptedModel(list(steps))
    return Agent(name="coder", instructions="Use run_python.", model=model, tools=[run_python])


def _outputs(result: RunResult) -> list[str]:
    return [str(item.output) for item in result.new_items if isinstance(item, ToolCallOutputItem)]


def _call(code: str, call_id: str) -> list[Any]:
    return [function_call("run_python", {"code": code}, call_id=call_id)]


@pytest.mark.parametrize("backend", ["local", "docker"])
async def test_runner_keeps_state_in_the_contexts_sandbox(backend: str, docker_client: Any) -> None:
    async with SandboxContext(spec={"backend": backend, "timeout_s": 30}) as context:
        agent = _agent(
            _call("n = 6 * 7\nprint(n)", "c1"),
            _call("print('halving')\nprint(n / 0)", "c2"),
            [assistant_message("n is 42")],
        )
        result = await Runner.run(agent, "compute", context=context, run_config=NO_TRACING)
        assert result.final_output == "n is 42"
        ok, failed = _outputs(result)
        assert ok == "42\n"
        assert failed.startswith("[execloop: error, exit status 1]")
        assert "halving" in failed
        assert "ZeroDivisionError" in failed
        assert context.last_result is not None
        assert context.last_result.exit_reason.value == "error"

        # a second run with the same context sees the first run's variables
        again = _agent(_call("print(n + 1)", "c3"), [assistant_message("43")])
        second = await Runner.run(again, "more", context=context, run_config=NO_TRACING)
        assert _outputs(second) == ["43\n"]
        assert context.session.sandbox is not None
        session_id = context.session.sandbox.session_id
    assert context.session.sandbox is None
    assert leftovers(session_id, docker_client) == []


async def test_run_with_sandbox_closes_it_after_the_run(docker_client: Any) -> None:
    agent = _agent(_call("import os\nprint(os.getcwd())", "c1"), [assistant_message("ok")])
    result = await run_with_sandbox(
        agent, "where", spec={"backend": "local"}, run_config=NO_TRACING
    )
    assert _outputs(result) == ["/workspace\n"]
    assert result.context_wrapper.context.session.sandbox is None


async def test_a_run_without_a_sandbox_context_is_refused() -> None:
    agent = _agent(_call("print(1)", "c1"), [assistant_message("never")])
    # the SDK wraps what a tool raises in its UserError; execloop's error is the cause
    with pytest.raises(UserError) as caught:
        await Runner.run(agent, "go", context={"not": "it"}, run_config=NO_TRACING)
    assert isinstance(caught.value.__cause__, ConfigError)
    assert "context=SandboxContext" in str(caught.value.__cause__)


def test_run_sync_keeps_state_and_close_reaps_the_sandbox(docker_client: Any) -> None:
    context = SandboxContext(spec={"backend": "local"})
    first = _agent(_call("m = 9", "c1"), [assistant_message("set")])
    Runner.run_sync(first, "set", context=context, run_config=NO_TRACING)
    second = _agent(_call("print(m * 2)", "c2"), [assistant_message("18")])
    result = Runner.run_sync(second, "use", context=context, run_config=NO_TRACING)
    assert _outputs(result) == ["18\n"]
    assert context.session.sandbox is not None
    session_id = context.session.sandbox.session_id
    context.close()
    assert context.session.sandbox is None
    assert leftovers(session_id, docker_client) == []
