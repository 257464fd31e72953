"""The beta SandboxAgent backend: a ``SandboxAgent`` run by the SDK's ``Runner`` with its
``ScriptedModel`` (no network, tracing off) runs its shell commands in an execloop sandbox;
files persist between commands, a failing command is a result with its status, and the
sandbox is gone after the run."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from agents import RunConfig, Runner, ToolCallOutputItem
from agents.sandbox import SandboxAgent, SandboxRunConfig
from agents.testing import ScriptedModel, assistant_message, function_call

from execloop.runtime.executors.openai_sandbox import (
    ExecloopSandboxClient,
    ExecloopSandboxClientOptions,
)

pytestmark = pytest.mark.anyio


def _sandbox_processes() -> list[str]:
    """The in-sandbox helpers this test process started (other processes' are not ours)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "helper.py" in cmdline and "--session" in cmdline:
            found.append(cmdline)
    return found


async def test_sandbox_agent_runs_commands_in_an_execloop_sandbox(docker_client: Any) -> None:
    assert _sandbox_processes() == []
    model = ScriptedModel(
        [
            [
                function_call(
                    "exec_command",
                    {"cmd": "echo hi > a.txt && python3 -c 'print(6 * 7)' && pwd"},
                    call_id="c1",
                )
            ],
            [function_call("exec_command", {"cmd": "cat a.txt && exit 3"}, call_id="c2")],
            [assistant_message("done")],
        ]
    )
    agent = SandboxAgent(name="sb", instructions="Use the shell.", model=model)
    options = ExecloopSandboxClientOptions(spec={"backend": "local", "timeout_s": 30})
    run_config = RunConfig(
        tracing_disabled=True,
        sandbox=SandboxRunConfig(client=ExecloopSandboxClient(), options=options),
    )
    result = await Runner.run(agent, "go", run_config=run_config)
    assert result.final_output == "done"
    first, second = [
        str(item.output) for item in result.new_items if isinstance(item, ToolCallOutputItem)
    ]
    assert "Process exited with code 0" in first
    assert first.endswith("Output:\n42\n/workspace\n")
    assert "Process exited with code 3" in second
    assert second.endswith("Output:\nhi\n")  # the first command's file is still there
    assert _sandbox_processes() == []
