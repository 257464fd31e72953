"""The smolagents executor driven by smolagents' own ``CodeAgent`` with a scripted model (no
network): its tools and variables reach the sandbox, state lasts across steps, a failing step
is an error the agent records and moves past, ``final_answer`` returns a Python value, a
sandbox that timed out is replaced with the tools defined again, and ``cleanup()`` leaves
nothing behind."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from smolagents import CodeAgent, tool
from smolagents.memory import ActionStep
from smolagents.models import ChatMessage, MessageRole, Model
from smolagents.monitoring import AgentLogger, LogLevel

from execloop.runtime.executors.smolagents import ExecloopExecutor
from tests.contract.backends import leftovers


@tool
def double(n: int) -> int:
    """Doubles a number.

    Args:
        n: the number to double
    """
    return 2 * n


class ScriptedModel(Model):
    """Replies with the scripted messages in order."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(model_id="scripted")
        self.replies = list(replies)

    def generate(
        self,
        messages: list[Any],
        stop_sequences: list[str] | None = None,
        response_format: dict[str, str] | None = None,
        tools_to_call_from: list[Any] | None = None,
        **kwargs: Any,
    ) -> ChatMessage:
        return ChatMessage(role=MessageRole.ASSISTANT, content=self.replies.pop(0))


def _code(source: str) -> str:
    return f"Thought: next step.\n<code>\n{source}\n</code>"


def _steps(agent: CodeAgent) -> list[ActionStep]:
    return [step for step in agent.memory.steps if isinstance(step, ActionStep)]


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_code_agent_runs_its_code_and_tools_in_the_sandbox(
    backend: str, docker_client: Any
) -> None:
    model = ScriptedModel(
        [
            _code("import os\ny = double(21)\nprint('y is', y, 'in', os.getcwd())"),
            _code("print('dividing')\nprint(y / 0)"),
            _code("final_answer({'y': y, 'start': start})"),
        ]
    )
    executor = ExecloopExecutor(
        spec={"backend": backend, "timeout_s": 30}, logger=AgentLogger(level=LogLevel.OFF)
    )
    agent = CodeAgent(tools=[double], model=model, executor=executor, verbosity_level=0)
    with agent:
        answer = agent.run("compute", additional_args={"start": 5}, max_steps=5)
        assert answer == {"y": 42, "start": 5}
        first, failed, final = _steps(agent)
        assert "y is 42 in /workspace" in first.observations
        assert failed.error is not None
        assert "[execloop: error, exit status 1]" in str(failed.error)
        assert "dividing" in str(failed.error)
        assert "ZeroDivisionError" in str(failed.error)
        assert "print(y / 0)" in str(failed.error)  # the traceback quotes the step's line
        assert final.is_final_answer
        assert executor.session.sandbox is not None
        session_id = executor.session.sandbox.session_id
    assert executor.session.sandbox is None
    assert leftovers(session_id, docker_client) == []


def test_timed_out_step_is_an_error_and_the_new_sandbox_has_the_tools_again() -> None:
    model = ScriptedModel(
        [
            _code("import time\ntime.sleep(30)"),
            _code("final_answer(double(start) + 1)"),
        ]
    )
    executor = ExecloopExecutor(
        spec={"backend": "local", "timeout_s": 1}, logger=AgentLogger(level=LogLevel.OFF)
    )
    with CodeAgent(tools=[double], model=model, executor=executor, verbosity_level=0) as agent:
        assert agent.run("go", additional_args={"start": 4}, max_steps=3) == 9
        slow, final = _steps(agent)
        assert "[execloop: timeout, exit status 124]" in str(slow.error)
        assert "new sandbox, earlier state is gone" in final.observations
        assert executor.session.starts == 2


FORGETFUL = """
from execloop.runtime.executors.smolagents import ExecloopExecutor

executor = ExecloopExecutor(spec={"backend": "local"})
print(executor.run_code_raise_errors("print(7)").logs.strip())
print(executor.session.sandbox.session_id)
"""


def test_a_program_that_never_calls_cleanup_still_exits_and_leaves_nothing(
    docker_client: Any,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORGETFUL], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    printed, session_id = done.stdout.split()
    assert printed == "7"
    assert leftovers(session_id, docker_client) == []
