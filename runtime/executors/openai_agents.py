"""An OpenAI Agents SDK (openai-agents 0.24) function tool that runs Python in an execloop
sandbox held by the run context: ``Agent(tools=[run_python])`` run with
``Runner.run(agent, input, context=SandboxContext(...))``.

The sandbox starts on the first call and lasts as long as the context, so state carries
across tool calls and across runs that share the context; ``async with SandboxContext()`` (or
``run_with_sandbox``, which wraps one ``Runner.run``) closes it; after ``Runner.run_sync``,
``context.close()`` does. A context type of your own
can subclass ``SandboxContext``. The tool returns stdout, or the exit reason, status, output
and traceback of a failure, bounded; ``context.last_result`` is the whole ``ExecResult``. An
infrastructure failure (the sandbox cannot start) is raised out of the run, not shown to the
model as a generic tool error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from execloop.errors import ConfigError
from execloop.runtime.executors.session import (
    OUTPUT_CHARS,
    SandboxSession,
    check_output_chars,
    missing_extra,
    render,
)
from execloop.sandboxes import ExecResult, SandboxSpec

try:
    from agents import Agent, RunContextWrapper, Runner, RunResult, function_tool
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="openai-agents") from exc

__all__ = ["SandboxContext", "run_python", "run_with_sandbox"]


@dataclass
class SandboxContext:
    """A run context holding one execloop sandbox (``spec`` picks backend and limits)."""

    spec: SandboxSpec | Mapping[str, Any] | None = None
    max_output_chars: int = OUTPUT_CHARS
    session: SandboxSession = field(init=False)
    last_result: ExecResult | None = field(default=None, init=False)
    # the loop the sandbox runs on, for close() after Runner.run_sync
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.max_output_chars = check_output_chars(self.max_output_chars)
        self.session = SandboxSession(spec=self.spec)

    async def aclose(self) -> None:
        """Close the sandbox (idempotent; a later call starts a new one)."""
        await self.session.aclose()

    def close(self) -> None:
        """``aclose()`` from synchronous code (after ``Runner.run_sync``): on the event loop
        the sandbox runs on, which ``run_sync`` keeps, so its processes are reaped there."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(self.aclose())
        else:
            asyncio.run(self.aclose())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@function_tool(failure_error_function=None)
async def run_python(ctx: RunContextWrapper[SandboxContext], code: str) -> str:
    """Run Python code in an isolated sandbox with no network. Variables, imports and files
    in the working directory persist between calls. Print what you need to see; a failure
    returns its exit reason, output and traceback.

    Args:
        code: Python source to run as a script (use print for output).
    """
    context = ctx.context
    if not isinstance(context, SandboxContext):
        raise ConfigError(
            "run_python needs Runner.run(..., context=SandboxContext(...)) (or a subclass); "
            f"the run's context is {type(context).__name__}"
        )
    context._loop = asyncio.get_running_loop()
    result, note = await context.session.exec(code)
    context.last_result = result
    return render(result, note=note, limit=context.max_output_chars)


async def run_with_sandbox(
    agent: Agent[Any],
    input: str,
    *,
    spec: SandboxSpec | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> RunResult:
    """``Runner.run(agent, input, context=SandboxContext(spec=spec), **kwargs)``, with the
    sandbox closed after the run."""
    async with SandboxContext(spec=spec) as context:
        return await Runner.run(agent, input, context=context, **kwargs)
