"""``run_task``'s progress notifications: one scale over the whole task, so what the client
sees never goes back when attempt 2 starts again at step 1.

The total is the task's ``max_attempts``; attempt k spans ``[k-1, k)``: it starts at ``k-1``
and a script's step ``s`` of ``t`` (``execloop_progress``) is ``k-1 + 0.99·s/t`` (a step
without a total approaches the attempt's end, never reaching it); the verdict is the total.
MCP wants every notification's value above the one before: a step reported out of order moves
half-way to the attempt's end instead of back. Every message names the attempt.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context

from execloop.runtime.loop import LoopEvent
from execloop.runtime.task import Result

__all__ = ["TaskProgress", "progress"]

log = logging.getLogger("execloop.runtime.mcp_progress")
_WITHIN = 0.99  # the share of an attempt's span its steps may reach


async def progress(ctx: Context[Any, Any], done: float, total: float | None, message: str) -> None:
    """Best effort: a client that asked for no progress, or went away, must not fail a task."""
    try:
        await ctx.report_progress(done, total, message)
    except Exception as exc:  # ValueError outside a request; a closed stream after a hang-up
        log.debug("progress %s/%s not sent: %s", done, total, exc)


class TaskProgress:
    """Forwards a task's attempts and its scripts' steps to the MCP client on one scale (see
    the module docstring). The broker's callback cannot wait for a slow client: what does not
    fit in a short queue is dropped (the broker's store keeps the steps)."""

    def __init__(self, ctx: Context[Any, Any], *, attempts: int, queue: int = 16) -> None:
        self._ctx = ctx
        self.attempts = attempts
        self._send, self._receive = anyio.create_memory_object_stream[tuple[float, float, str]](
            queue
        )
        self._last = -math.inf
        self.dropped = 0

    def on_event(self, event: LoopEvent) -> None:
        """The broker's observer: an attempt's start and its script's steps."""
        of = f"attempt {event.attempt} of {self.attempts}"
        start = float(event.attempt - 1)
        if event.kind == "attempt":
            self._queue(start, start, of)
        elif event.kind == "progress":
            step = event.data["event"]
            share = step.step / step.total if step.total else 1 - 1 / (1 + step.step)
            wanted = start + _WITHIN * min(max(share, 0.0), 1.0)
            self._queue(wanted, start + _WITHIN, f"{of}: {step.describe()}")

    def _queue(self, wanted: float, ceiling: float, message: str) -> None:
        # decided here, in event order: the queue then only delivers
        value = wanted if wanted > self._last else (self._last + ceiling) / 2
        if not value > self._last:
            return  # nothing left between the last value and this attempt's end
        try:
            self._send.send_nowait((value, float(self.attempts), message))
        except anyio.WouldBlock:
            self.dropped += 1
            return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the call is over
        self._last = value

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Forward while the block runs; what is queued when it ends is still sent."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._forward)
            try:
                yield
            finally:
                self._send.close()

    async def _forward(self) -> None:
        async with self._receive:
            async for done, total, message in self._receive:
                await progress(self._ctx, done, total, message)

    async def finish(self, result: Result) -> None:
        """The verdict, at the total (after everything ``running`` forwarded)."""
        verdict = f"{result.status.value} after attempt {result.attempts} of {self.attempts}"
        await progress(self._ctx, float(self.attempts), float(self.attempts), verdict)
