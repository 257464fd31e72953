"""The broker: accepts tasks, runs sub-agents side by side, returns exactly one Result per task.

Sub-agents talk only to the broker. Every task, attempt, tool call and result is written to
SQLite as it happens, and every unfinished task names the broker that owns it. A broker
started on a database resumes the unfinished tasks whose owner is gone (a crashed or stopped
broker; see ``execloop.runtime.ownership``) and leaves the tasks of live brokers alone. A task
id that already has a result is answered from the store (idempotent submission); one that a
live broker elsewhere is running is answered when that broker stores its result (or taken
over if it dies first). Concurrency is bounded (``max_concurrency`` sub-agents at once) and
admission is controlled (at most ``max_pending`` tasks waiting or running; beyond that
``submit`` refuses). Sandboxes are bounded too: at most ``max_starting_sandboxes`` start at once
and at most ``max_live_sandboxes`` exist at once (host memory); a sub-agent over a bound waits.

    async with Broker(db="runs.db", model=model, max_concurrency=8) as broker:
        results = await broker.map(tasks)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
import anyio.to_thread

from execloop.errors import BrokerBusyError, BrokerStoppedError, ConfigError
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.broker_agents import AgentRunner, NotOwner
from execloop.runtime.checkpoints import remove_task_checkpoints, store_checkpoint_root
from execloop.runtime.loop import LoopEvent
from execloop.runtime.models.base import Model
from execloop.runtime.ownership import BrokerOwner, claim_if_gone, follow, owner_is_gone
from execloop.runtime.ray_cluster import RayCluster
from execloop.runtime.run_summary import summarize_run
from execloop.runtime.store import TaskRow, TaskStore
from execloop.runtime.task import ErrorKind, Result, Task, TaskStatus
from execloop.runtime.tokens import load_tokenizer
from execloop.sandboxes import Sandbox, SandboxSpec, create_sandbox, remove_orphans_once
from execloop.sandboxes.gate import SandboxGate
from execloop.sandboxes.pool import PooledSandbox, PoolSet

__all__ = ["Broker", "run_tasks", "summarize_run"]

log = logging.getLogger("execloop.runtime.broker")


class Broker:
    """Runs tasks to one result each, persisted; see the module docstring."""

    def __init__(
        self,
        *,
        db: Path | str | TaskStore,
        model: Model | Callable[[Task], Model],
        max_concurrency: int = 8,
        max_pending: int = 10_000,
        sandbox_factory: Callable[[SandboxSpec], Sandbox] = create_sandbox,
        run_id: str | None = None,
        reap_orphans: bool = True,
        registry: ToolRegistry | Callable[[Task], ToolRegistry] | None = None,
        warm_sandboxes: int = 0,
        max_live_sandboxes: int | None = None,
        max_starting_sandboxes: int | None = 16,
        lease_s: float = 30.0,
        skill_dirs: Sequence[Path] = (),
        outputs_dir: Path | None = None,
        on_event: Callable[[str, LoopEvent], None] | None = None,
        cluster: RayCluster | None = None,
    ) -> None:
        if max_concurrency < 1 or max_pending < 1:
            raise ConfigError("max_concurrency and max_pending must be at least 1")
        for name, bound in (
            ("max_live_sandboxes", max_live_sandboxes),
            ("max_starting_sandboxes", max_starting_sandboxes),
        ):
            if bound is not None and (not isinstance(bound, int) or bound < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 or None, not {bound!r}")
        if cluster is not None and (registry is not None or outputs_dir is not None):
            raise ConfigError(
                "a broker on a Ray cluster cannot serve host tools (registry) or keep outputs "
                "(outputs_dir) yet: run those tasks on one machine, without cluster"
            )
        if not lease_s > 0:
            raise ConfigError(f"lease_s must be a positive number of seconds, not {lease_s}")
        self._own_store = not isinstance(db, TaskStore)
        self.store = db if isinstance(db, TaskStore) else TaskStore(db)
        # one model for every task, or one per task (e.g. a scripted model per task); a
        # factory may also be asked for the model of a task resumed from a dead broker
        self._model_for: Callable[[Task], Model] = (
            model if not isinstance(model, Model) else (lambda task: model)
        )
        self.model_name = model.name if isinstance(model, Model) else "per-task models"
        self.max_pending = max_pending
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.owner = BrokerOwner(lease_s=lease_s)
        self._factory = sandbox_factory
        # Warm pools (one per spec) hand out started sandboxes; their starts are capped at
        # max_starting_sandboxes like the tasks' own (the pools' default of two at a time made
        # a burst of 100 tasks 1.6x slower: bench/scale.py --warm 16).
        self._pools: PoolSet | None = None
        if warm_sandboxes > 0:
            self._pools = PoolSet(
                min_idle=warm_sandboxes,
                max_size=warm_sandboxes + 2 * max_concurrency,
                # the pools start sandboxes as fast as the gate below lets tasks start them
                max_starting=max_starting_sandboxes or 2 * max_concurrency,
            )
            pools = self._pools
            self._factory = lambda spec: PooledSandbox(pools, spec)
        # Back-pressure on the host (sandboxes/gate.py): a burst of sub-agents waits for start
        # slots and live slots instead of starting a hundred interpreters at once.
        self._factory = SandboxGate(
            self._factory, max_live=max_live_sandboxes, max_starting=max_starting_sandboxes
        )
        self._reap = reap_orphans
        self.skill_dirs = tuple(Path(folder) for folder in skill_dirs)
        self._agents = AgentRunner(
            store=self.store,
            owner=self.owner,
            sandbox_factory=self._factory,
            registry=registry,
            skill_dirs=self.skill_dirs,
            outputs_dir=outputs_dir,
            observe=on_event,  # (task id, event) for live views such as `execloop task`
            cluster=cluster,
        )
        self._slots = anyio.CapacityLimiter(max_concurrency)
        self._done: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancelled: set[str] = set()
        self._followed: set[str] = set()  # tasks another live broker is running for us
        self._resumed: list[str] = []
        self._pending = 0  # launched tasks without a result yet (admission control)
        self._tasks: anyio.abc.TaskGroup | None = None
        self.started_at = time.monotonic()

    @property
    def resumed(self) -> tuple[str, ...]:
        """Ids of the tasks of gone brokers that this one took over when it started."""
        return tuple(self._resumed)

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.store.start_run(self.run_id, {"model": self.model_name})
        await anyio.to_thread.run_sync(load_tokenizer)  # off the loop every sub-agent shares
        if self._reap:
            await self._reap_orphans()
        self.owner.hold(lambda: self.store.renew(owner=self.owner.id, lease_s=self.owner.lease_s))
        try:
            if self._pools is not None:
                await self._pools.__aenter__()
            self._tasks = anyio.create_task_group()
            await self._tasks.__aenter__()
        except BaseException:
            self.owner.release()
            raise
        try:
            for row in self.store.unfinished():  # finish the work of brokers that are gone
                if owner_is_gone(row.owner, row.lease_until):
                    self._resume(row)
        except BaseException as exc:  # e.g. the database failed: stop what was resumed
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self.started_at = time.monotonic()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        if exc is not None:
            self._tasks.cancel_scope.cancel()
        try:
            await self._tasks.__aexit__(exc_type, exc, tb)
        finally:
            try:
                if self._pools is not None:
                    await self._pools.__aexit__(None, None, None)
            finally:
                # every task has ended: those without a result were stopped, and are given up
                # so that any broker resumes them (this process may live on)
                self.store.release(owner=self.owner.id)
                self.owner.release()
                self.store.finish_run(self.run_id)
                if self._own_store:
                    self.store.close()

    async def warm_up(self, spec: SandboxSpec | None = None) -> None:
        """Wait until the warm pool for ``spec`` holds its idle sandboxes (no-op without one)."""
        if self._pools is not None:
            await (await self._pools.pool(spec or SandboxSpec())).wait_warm()

    @staticmethod
    async def _reap_orphans() -> None:
        """Containers of a broker that died are nobody's children: remove them first."""
        await remove_orphans_once()  # best effort: no Docker here, nothing orphaned in it

    # -- the orchestrator's API ---------------------------------------------------------
    async def submit(self, task: Task) -> str:
        """Accept a task (idempotent by ``task.id``); returns its id at once.

        A task another live broker owns is not run here: its result is awaited from the store.
        """
        if self._tasks is None:
            raise ConfigError("the broker is not running; use `async with Broker(...)`")
        if task.id in self._done:
            return task.id
        if self.store.result(task.id) is not None:  # answered before, maybe by another run
            self._done[task.id] = anyio.Event()
            self._done[task.id].set()
            return task.id
        if self._pending >= self.max_pending:
            raise BrokerBusyError(
                f"{self._pending} tasks are already pending (max_pending={self.max_pending}); "
                "wait for results before submitting more",
                pending=self._pending,
                max_pending=self.max_pending,
            )
        model = self._build_model(task)
        row = self.store.task(task.id)
        if row is None:
            if self.store.add_task(
                task, self.run_id, owner=self.owner.id, lease_s=self.owner.lease_s
            ):
                self._launch(task, model, owned=True)
                return task.id
            row = self.store.task(task.id)  # another broker added it a moment ago
            assert row is not None
        # not owned: another live broker runs it, and this one follows it to its result
        self._launch(task, model, owned=self._claim_if_gone(row))
        return task.id

    async def result(self, task_id: str) -> Result:
        """The task's one result, waiting for it if needed."""
        if task_id not in self._done:
            stored = self.store.result(task_id)
            if stored is None:
                raise ConfigError(f"unknown task id {task_id!r}: submit it first")
            return stored
        await self._done[task_id].wait()
        stored = self.store.result(task_id)
        if stored is None:
            raise BrokerStoppedError(
                f"task {task_id} has no result: the broker stopped before it finished "
                "(a broker started on the same database resumes it)",
                task_id=task_id,
            )
        return stored

    async def gather(self, task_ids: Sequence[str]) -> list[Result]:
        return [await self.result(task_id) for task_id in task_ids]

    async def map(self, tasks: Sequence[Task]) -> list[Result]:
        """Submit every task (they run side by side), then wait for all their results."""
        return await self.gather([await self.submit(task) for task in tasks])

    async def cancel(self, task_id: str) -> bool:
        """Stop a task this broker runs; it ends with an ``error`` result saying it was
        cancelled. False for a task that has its result, or that another broker runs."""
        if task_id not in self._done or self._done[task_id].is_set():
            return False
        if task_id in self._followed:
            return False
        self._cancelled.add(task_id)
        scope = self._scopes.get(task_id)
        if scope is not None:
            scope.cancel()
        return True

    # -- owning tasks -------------------------------------------------------------------
    def _build_model(self, task: Task) -> Model:
        try:
            return self._model_for(task)
        except Exception as exc:
            raise ConfigError(
                f"the model factory failed for task {task.id!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def _claim_if_gone(self, row: TaskRow) -> bool:
        return claim_if_gone(self.store, self.owner, row)

    def _resume(self, row: TaskRow) -> None:
        """Take over a gone broker's task, unless this broker cannot run it: then it is left
        unclaimed (with a warning) for a broker that can."""
        try:
            task = row.task
            model = self._model_for(task)
        except Exception as exc:  # a spec that no longer validates, a factory that failed
            log.warning(
                "not resuming task %s: %s: %s; it is left for a broker that can run it",
                row.id,
                type(exc).__name__,
                exc,
            )
            return
        if self._claim_if_gone(row):
            log.info("resuming task %s (launched %d time(s) before)", row.id, row.launches)
            self._resumed.append(row.id)
            self._launch(task, model, owned=True)

    # -- running one task ---------------------------------------------------------------
    def _launch(self, task: Task, model: Model, *, owned: bool) -> None:
        """Run an owned task, or follow the live broker that owns it."""
        assert self._tasks is not None
        self._done.setdefault(task.id, anyio.Event())
        self._pending += 1
        if not owned:
            self._followed.add(task.id)
        self._tasks.start_soon(self._see_through, task, model, owned, name=f"task {task.id}")

    async def _see_through(self, task: Task, model: Model, owned: bool) -> None:
        try:
            while True:
                if owned and await self._run(task, model):
                    return
                owned = await self._follow(task)  # False: another broker stored the result
                if not owned:
                    return
        finally:
            self._pending -= 1
            self._followed.discard(task.id)
            self._done[task.id].set()

    async def _follow(self, task: Task) -> bool:
        """Follow the live broker that runs the task: True once this one claimed it."""
        self._followed.add(task.id)
        claimed = await follow(self.store, self.owner, task.id)
        if claimed:
            log.info("taking over task %s: the broker that ran it is gone", task.id)
            self._followed.discard(task.id)
        return claimed

    async def _run(self, task: Task, model: Model) -> bool:
        """Run an owned task to its result; True if it was stored (False: another broker
        took the task over, and holds or will store its one result)."""
        result: Result | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scopes[task.id] = scope
                if task.id in self._cancelled:
                    scope.cancel()
                async with self._slots:
                    result = await self._agents.run(task, model)
        except NotOwner:
            return False
        except Exception as exc:  # a bug must not leave an owned task without its one result
            log.exception("task %s crashed", task.id)
            error = f"internal: {type(exc).__name__}: {exc}"
            result = Result(
                task_id=task.id, status=TaskStatus.ERROR, error=error, error_kind=ErrorKind.INTERNAL
            )
        finally:  # a stopping broker gives the task up in __aexit__
            self._scopes.pop(task.id, None)
        if result is None:  # cancelled by the orchestrator
            result = Result(
                task_id=task.id,
                status=TaskStatus.ERROR,
                error="cancelled",
                error_kind=ErrorKind.CANCELLED,
            )
        if self.store.put_result(result, owner=self.owner.id):
            remove_task_checkpoints(store_checkpoint_root(self.store.path), task.id)
            return True
        log.warning("task %s: another broker took it over; its result is the one kept", task.id)
        return False


def run_tasks(
    tasks: Sequence[Task],
    *,
    db: Path | str,
    model: Model | Callable[[Task], Model],
    max_concurrency: int = 8,
) -> list[Result]:
    """The synchronous entry point; refuses to nest inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("run_tasks() was called inside an event loop; use `async with Broker`")

    async def main() -> list[Result]:
        async with Broker(db=db, model=model, max_concurrency=max_concurrency) as broker:
            return await broker.map(tasks)

    return anyio.run(main)
