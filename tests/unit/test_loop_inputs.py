"""The loop refuses inputs before attempt 1: no model call, no sandbox, one error result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from execloop.runtime.loop import SubAgent
from execloop.runtime.models.base import ModelReply, ModelRequest
from execloop.runtime.task import Task, TaskStatus
from execloop.sandboxes import Sandbox, SandboxSpec

pytestmark = pytest.mark.anyio


class _NeverCalled:
    """A model and a sandbox factory that record being used (they must not be)."""

    name = "never"
    scripted = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls.append("model")
        raise AssertionError("the model must not be called")

    def sandbox(self, spec: SandboxSpec) -> Sandbox:
        self.calls.append("sandbox")
        raise AssertionError("no sandbox may be created")


async def test_inputs_larger_than_the_workspace_end_the_task_before_anything_runs(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(600 * 1024**2)  # sparse
    never = _NeverCalled()
    agent = SubAgent(Task(goal="g", inputs=(big,)), model=never, sandbox_factory=never.sandbox)
    result = await agent.run()
    assert result.status is TaskStatus.ERROR and result.attempts == 0
    assert result.error is not None and "the inputs total 629.1 MB" in result.error
    assert never.calls == []
    assert "Input files: (refused)" in agent.request(1).messages[0].content


async def test_an_input_changed_into_an_escaping_link_after_the_task_was_made_is_refused(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x").write_text("fine")
    task = Task(goal="g", inputs=(data,))
    (data / "x").unlink()
    (data / "x").symlink_to("/etc/shadow")
    never = _NeverCalled()
    result = await SubAgent(task, model=never, sandbox_factory=never.sandbox).run()
    assert result.status is TaskStatus.ERROR and never.calls == []
    assert result.error is not None
    assert f"{data}/x is a symbolic link to /etc/shadow" in result.error
    with pytest.raises(ValidationError, match="is a symbolic link to /etc/shadow"):
        Task(goal="g", inputs=(data,))


def test_a_fifo_in_an_input_directory_is_refused_by_the_task(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(ValidationError, match="p is a fifo; only regular files and directories"):
        Task(goal="g", inputs=(tmp_path,))
