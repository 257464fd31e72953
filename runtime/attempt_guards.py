"""What surrounds one attempt's script in its sandbox: the tool bridge serving the host tools
the task allows, the checkpoint guard (a script whose checkpoints outgrow their cap is stopped),
and the script's progress reports, read from its streamed output when someone listens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from execloop.runtime.bridge import ToolBridge, ToolRegistry
from execloop.runtime.checkpoints import TaskCheckpoints
from execloop.runtime.inputs import SCRIPT_NAME
from execloop.sandboxes import ExecResult, Sandbox
from execloop.sandboxes.progress import OnProgress, ProgressReader

__all__ = ["checkpoints_guard", "exec_script", "tool_bridge"]


@asynccontextmanager
async def tool_bridge(
    sandbox: Sandbox, registry: ToolRegistry | None, *, allow: Sequence[str], call_budget: int
) -> AsyncIterator[ToolBridge | None]:
    """The tool bridge for this attempt's sandbox, when the task allows tools (else None)."""
    if not allow or registry is None:
        yield None
        return
    bridge = ToolBridge(sandbox, registry, allow=allow, call_budget=call_budget)
    async with bridge:
        yield bridge


async def checkpoints_guard(
    checkpoints: TaskCheckpoints | None, run: Callable[[], Awaitable[ExecResult]]
) -> ExecResult:
    """``run()``, watched by the task's checkpoint cap when it has checkpoints."""
    if checkpoints is None:
        return await run()
    return await checkpoints.guard(run)


async def exec_script(sandbox: Sandbox, on_progress: OnProgress | None) -> ExecResult:
    """Run the script; what it reports with ``execloop_progress`` goes to ``on_progress``
    (read from its streamed output) when one is given."""
    if on_progress is None:
        return await sandbox.exec_file(SCRIPT_NAME)
    reader = ProgressReader(on_progress)
    try:
        return await sandbox.exec_file(SCRIPT_NAME, on_output=reader.feed)
    finally:
        reader.close()
