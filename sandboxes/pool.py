"""Warm pools: started sandboxes waiting, so acquiring one costs almost nothing.

A pool serves exactly one spec (``PoolSet`` keys pools by ``spec.key()``). A sandbox handed out
is never handed out again: on release it is destroyed in the background and the pool starts a
fresh one, so no task ever sees another task's files, variables or processes. Starts are capped
(``max_starting``) and the total is capped (``max_size``): when both are reached, ``acquire``
waits — back-pressure instead of overloading the machine.

    async with SandboxPool(spec, min_idle=2, max_size=8) as pool:
        async with pool.acquire() as sandbox:
            await sandbox.exec("print(1)")
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from execloop.errors import ConfigError, SandboxClosedError
from execloop.sandboxes.base import Sandbox
from execloop.sandboxes.delegate import DelegatingSandbox
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["PoolSet", "PoolStats", "PooledSandbox", "SandboxPool"]

log = logging.getLogger("execloop.sandboxes.pool")

SandboxFactory = Callable[[SandboxSpec], Sandbox]
_RETRY_AFTER_FAILURE_S = 1.0


def _default_factory(spec: SandboxSpec) -> Sandbox:
    from execloop.sandboxes import create_sandbox

    return create_sandbox(spec)


class PoolStats:
    """Counters of one pool (a plain snapshot, cheap to take)."""

    def __init__(self, pool: SandboxPool) -> None:
        self.idle = len(pool._idle)
        self.in_use = pool._in_use
        self.starting = pool._starting
        self.closing = pool._closing
        self.started = pool._started_total
        self.start_failures = pool._failures_total

    def __repr__(self) -> str:
        return f"PoolStats({', '.join(f'{k}={v}' for k, v in vars(self).items())})"


class SandboxPool:
    """Started sandboxes of one spec, handed out once each."""

    def __init__(
        self,
        spec: SandboxSpec,
        *,
        min_idle: int = 1,
        max_size: int = 4,
        max_starting: int = 2,
        refill_delay_s: float = 0.05,
        factory: SandboxFactory = _default_factory,
    ) -> None:
        if not 0 <= refill_delay_s < math.inf:
            raise ConfigError(f"refill_delay_s must be a finite number >= 0, not {refill_delay_s}")
        if not 0 <= min_idle <= max_size or max_size < 1 or max_starting < 1:
            raise ConfigError(
                f"pool sizes must satisfy 0 <= min_idle ({min_idle}) <= max_size ({max_size}), "
                f"max_size >= 1 and max_starting ({max_starting}) >= 1"
            )
        self.spec = spec
        self.min_idle = min_idle
        self.max_size = max_size
        # A refill waits this long after a sandbox was handed out: a container start takes the
        # CPUs for a few hundred ms, and the caller's first result should not wait behind it.
        self.refill_delay_s = refill_delay_s
        self._last_take = -math.inf
        self._factory = factory
        self._start_slots = anyio.Semaphore(max_starting)
        # an uncontended acquire takes no loop pass (a caller's acquire costs one lock)
        self._changed = anyio.Condition(anyio.Lock(fast_acquire=True))
        self._idle: collections.deque[Sandbox] = collections.deque()
        self._in_use = self._starting = self._closing = 0
        self._started_total = self._failures_total = 0
        self._last_failure: BaseException | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._open = False

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._open = True
        self._tasks.start_soon(self._keep_warm)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()  # stop warming; starts in flight are closed below
        await self._tasks.__aexit__(exc_type, exc, tb)
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as closing:
                while self._idle:
                    closing.start_soon(self._idle.popleft().close)

    @property
    def total(self) -> int:
        """Sandboxes alive or on their way: idle, in use, starting and closing."""
        return len(self._idle) + self._in_use + self._starting + self._closing

    async def wait_warm(self, *, settled: bool = False) -> None:
        """Wait until ``min_idle`` sandboxes are idle (e.g. before a burst of work); with
        ``settled``, also until the pool is at rest: no start or close in flight."""
        async with self._changed:
            while len(self._idle) < self.min_idle or (settled and self._starting + self._closing):
                await self._changed.wait()

    def stats(self) -> PoolStats:
        return PoolStats(self)

    # -- handing out -----------------------------------------------------------------------
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Sandbox]:
        """A started sandbox for this task alone; destroyed when the block ends."""
        sandbox = await self._take()
        try:
            yield sandbox
        finally:
            await self._release(sandbox)

    async def _take(self) -> Sandbox:
        if not self._open:
            raise SandboxClosedError("the pool is not open; use `async with SandboxPool(...)`")
        async with self._changed:
            while not self._idle and self.total >= self.max_size:
                await self._changed.wait()  # back-pressure: wait for a release
            if self._idle:
                self._in_use += 1
                self._last_take = time.monotonic()
                self._changed.notify_all()  # the warmer may refill
                return self._idle.popleft()
            self._starting += 1
        sandbox = await self._start_one()  # nothing idle: start one for this caller
        async with self._changed:
            self._in_use += 1
        return sandbox

    async def _release(self, sandbox: Sandbox) -> None:
        with anyio.CancelScope(shield=True):
            async with self._changed:
                self._in_use -= 1
                self._closing += 1
            if self._open and self._tasks is not None:
                self._tasks.start_soon(self._destroy, sandbox)  # the caller need not wait
            else:
                await self._destroy(sandbox)

    async def _destroy(self, sandbox: Sandbox) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await sandbox.close()
        finally:
            async with self._changed:
                self._closing -= 1
                self._changed.notify_all()

    async def _start_one(self, *, warm: bool = False) -> Sandbox:
        """Start a sandbox (and ``warm`` it, when it will wait idle); the caller has already
        counted it in ``_starting``."""
        try:
            async with self._start_slots:
                sandbox = self._factory(self.spec)
                try:
                    await sandbox.start()
                    if warm:  # its first exec then costs what later ones do
                        await sandbox.warm()
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await sandbox.close()
                    raise
            self._started_total += 1
            return sandbox
        except Exception as exc:
            self._failures_total += 1
            self._last_failure = exc
            raise
        finally:
            with anyio.CancelScope(shield=True):
                async with self._changed:
                    self._starting -= 1
                    self._changed.notify_all()

    # -- keeping warm ----------------------------------------------------------------------
    async def _keep_warm(self) -> None:
        assert self._tasks is not None
        while True:
            async with self._changed:
                while not self._short():
                    await self._changed.wait()
            pause = self._last_take + self.refill_delay_s - time.monotonic()
            if pause > 0:  # a caller just took one: its first exec goes first
                await anyio.sleep(pause)
            async with self._changed:
                if not self._short():
                    continue
                self._starting += 1
            self._tasks.start_soon(self._warm_one)
            if self._last_failure is not None:  # do not spin on a backend that cannot start
                await anyio.sleep(_RETRY_AFTER_FAILURE_S)

    def _short(self) -> bool:
        """Fewer than ``min_idle`` idle or starting, with room to start one."""
        return len(self._idle) + self._starting < self.min_idle and self.total < self.max_size

    async def _warm_one(self) -> None:
        try:
            sandbox = await self._start_one(warm=True)
        except Exception as exc:
            log.warning("pool could not start a %s sandbox: %s", self.spec.backend, exc)
            return
        self._last_failure = None
        with anyio.CancelScope(shield=True):  # a started sandbox is either pooled or closed
            async with self._changed:
                if self._open:
                    self._idle.append(sandbox)
                    self._changed.notify_all()
                    return
            await sandbox.close()


class PoolSet:
    """One pool per distinct spec, created on first use (what a broker holds).

    Each pool runs in a task of the set's own task group, so it is entered and left in the
    same task, as anyio requires, whichever task asked for it first.
    """

    def __init__(self, *, min_idle: int = 1, max_size: int = 4, max_starting: int = 2) -> None:
        self._sizes = (min_idle, max_size, max_starting)
        self._pools: dict[str, SandboxPool] = {}
        self._lock = anyio.Lock()
        self._shutdown = anyio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._shutdown.set()
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)
        self._pools.clear()

    async def _serve(
        self, spec: SandboxSpec, *, task_status: anyio.abc.TaskStatus[SandboxPool]
    ) -> None:
        min_idle, max_size, max_starting = self._sizes
        pool = SandboxPool(spec, min_idle=min_idle, max_size=max_size, max_starting=max_starting)
        async with pool:
            task_status.started(pool)
            await self._shutdown.wait()

    async def pool(self, spec: SandboxSpec) -> SandboxPool:
        if self._tasks is None or self._shutdown.is_set():
            raise SandboxClosedError("the pool set is not open; use `async with PoolSet()`")
        async with self._lock:
            key = spec.key()
            if key not in self._pools:
                self._pools[key] = await self._tasks.start(self._serve, spec)
            return self._pools[key]

    @asynccontextmanager
    async def acquire(self, spec: SandboxSpec) -> AsyncIterator[Sandbox]:
        async with (await self.pool(spec)).acquire() as sandbox:
            yield sandbox


class PooledSandbox(DelegatingSandbox):
    """A sandbox handle for code that expects ``async with factory(spec) as sandbox``: entering
    acquires a started sandbox from the pool set, leaving hands it back to be destroyed."""

    def __init__(self, pools: PoolSet, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self._pools = pools
        self._lease: AbstractAsyncContextManager[Sandbox] | None = None

    async def start(self) -> None:
        pool = await self._pools.pool(self.spec)
        self._lease = pool.acquire()
        self._inner = await self._lease.__aenter__()
        self.session_id = self._inner.session_id

    async def close(self) -> None:
        lease, self._lease = self._lease, None
        self._closed = True
        if lease is not None:
            await lease.__aexit__(None, None, None)
