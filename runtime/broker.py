"""The broker: accepts tasks, runs sub-agents side by side, returns exactly one Result per task.

Sub-agents talk only to the broker. Every task, attempt, tool call and result is written to
SQLite as it happens; a broker started on the same database resumes the tasks that have no
result yet, and a task id that already has a result is answered from the store (idempotent
submission). Concurrency is bounded (``max_concurrency`` sub-agents at once) and admission is
controlled (at most ``max_pending`` tasks waiting or running; beyond that ``submit`` refuses).

    async with Broker(db="runs.db", model=model, max_concurrency=8) as broker:
        results = await broker.map(tasks)
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from execloop.errors import BrokerBusyError, ConfigError, ExecloopError
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.loop import LoopEvent, SubAgent
from execloop.runtime.models.base import Model
from execloop.runtime.report import RunSummary, StageSummary, TaskSummary
from execloop.runtime.skills import Skill, find_skill
from execloop.runtime.store import TaskStore
from execloop.runtime.task import Result, Task, TaskStatus
from execloop.sandboxes import Sandbox, SandboxSpec, create_sandbox
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
        registry: ToolRegistry | None = None,
        warm_sandboxes: int = 0,
    ) -> None:
        if max_concurrency < 1 or max_pending < 1:
            raise ConfigError("max_concurrency and max_pending must be at least 1")
        self.store = db if isinstance(db, TaskStore) else TaskStore(db)
        # one model for every task, or one per task (e.g. a scripted model per task)
        self._model_for: Callable[[Task], Model] = (
            model if not isinstance(model, Model) else (lambda task: model)
        )
        self.model_name = model.name if isinstance(model, Model) else "per-task models"
        self.max_pending = max_pending
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._factory = sandbox_factory
        self.registry = registry
        # Warm pools (one per spec) hand out started sandboxes; starts stay capped at two at a
        # time, so a burst of tasks queues for sandboxes instead of overloading the machine.
        self._pools: PoolSet | None = None
        if warm_sandboxes > 0:
            self._pools = PoolSet(
                min_idle=warm_sandboxes, max_size=warm_sandboxes + 2 * max_concurrency
            )
            pools = self._pools
            self._factory = lambda spec: PooledSandbox(pools, spec)
        self._reap = reap_orphans
        self._slots = anyio.CapacityLimiter(max_concurrency)
        self._done: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cancelled: set[str] = set()
        self._pending = 0  # launched tasks without a result yet (admission control)
        self._skills: dict[str, Skill] = {}  # loaded once per broker, not once per task
        self._tasks: anyio.abc.TaskGroup | None = None
        self.started_at = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self.store.start_run(self.run_id, {"model": self.model_name})
        if self._reap:
            await self._reap_orphans()
        if self._pools is not None:
            await self._pools.__aenter__()
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        for row in self.store.unfinished():  # a previous broker died: finish its work
            log.info("resuming task %s (launched %d time(s) before)", row.id, row.launches)
            self._launch(row.task)
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
            if self._pools is not None:
                await self._pools.__aexit__(None, None, None)
            self.store.finish_run(self.run_id)

    async def warm_up(self, spec: SandboxSpec | None = None) -> None:
        """Wait until the warm pool for ``spec`` holds its idle sandboxes (no-op without one)."""
        if self._pools is not None:
            await (await self._pools.pool(spec or SandboxSpec())).wait_warm()

    @staticmethod
    async def _reap_orphans() -> None:
        """Containers of a broker that died are nobody's children: remove them first."""
        from execloop.sandboxes.docker_backend import default_client, reap_orphans_once

        try:
            client = await anyio.to_thread.run_sync(default_client)
            await reap_orphans_once(client)
        except ExecloopError as exc:  # no Docker here: nothing of ours can be orphaned in it
            log.debug("no orphan reaping: %s", exc)

    # -- the orchestrator's API ---------------------------------------------------------
    async def submit(self, task: Task) -> str:
        """Accept a task (idempotent by ``task.id``); returns its id at once."""
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
                "wait for results before submitting more"
            )
        self.store.add_task(task, self.run_id)
        self._launch(task)
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
        assert stored is not None
        return stored

    async def gather(self, task_ids: Sequence[str]) -> list[Result]:
        return [await self.result(task_id) for task_id in task_ids]

    async def map(self, tasks: Sequence[Task]) -> list[Result]:
        """Submit every task (they run side by side), then wait for all their results."""
        return await self.gather([await self.submit(task) for task in tasks])

    async def cancel(self, task_id: str) -> bool:
        """Stop a task; it ends with an ``error`` result saying it was cancelled."""
        if task_id not in self._done or self._done[task_id].is_set():
            return False
        self._cancelled.add(task_id)
        scope = self._scopes.get(task_id)
        if scope is not None:
            scope.cancel()
        return True

    # -- running one task ---------------------------------------------------------------
    def _launch(self, task: Task) -> None:
        assert self._tasks is not None
        self._done.setdefault(task.id, anyio.Event())
        self._pending += 1
        self._tasks.start_soon(self._run, task, name=f"execloop task {task.id}")

    async def _run(self, task: Task) -> None:
        result: Result | None = None
        try:
            with anyio.CancelScope() as scope:
                self._scopes[task.id] = scope
                if task.id in self._cancelled:
                    scope.cancel()
                async with self._slots:
                    result = await self._run_agent(task)
        except Exception as exc:  # a bug must not leave a task without its one result
            log.exception("task %s crashed", task.id)
            result = Result(task_id=task.id, status=TaskStatus.ERROR, error=f"internal: {exc}")
        finally:  # no await below: nothing here can be interrupted by a cancellation
            if result is None:  # cancelled by the orchestrator or by shutdown
                result = Result(
                    task_id=task.id,
                    status=TaskStatus.ERROR,
                    error="cancelled" if task.id in self._cancelled else "broker stopped",
                )
            if result.error != "broker stopped":  # a stopped broker resumes it later
                self.store.put_result(result)
            self._scopes.pop(task.id, None)
            self._pending -= 1
            self._done[task.id].set()

    def _skill(self, name: str) -> Skill:
        if name not in self._skills:
            self._skills[name] = find_skill(name)
        return self._skills[name]

    async def _run_agent(self, task: Task) -> Result:
        launch = self.store.mark_running(task.id)
        try:
            skill = self._skill(task.skill) if task.skill else None
        except ExecloopError as exc:
            return Result(task_id=task.id, status=TaskStatus.ERROR, error=str(exc))

        def persist(event: LoopEvent) -> None:
            if event.kind == "recorded":
                self.store.add_attempt(task.id, launch, event.data["record"])
            elif event.kind == "tool_calls":
                records = [r.model_dump(mode="json") for r in event.data["records"]]
                self.store.add_tool_calls(task.id, records)

        agent = SubAgent(
            task,
            model=self._model_for(task),
            skill=skill,
            sandbox_factory=self._factory,
            on_event=persist,
            registry=self.registry,
        )
        return await agent.run()


def summarize_run(store: TaskStore, run_id: str) -> RunSummary:
    """The report's view of a run, built from the store."""
    tasks = []
    for row in store.tasks(run_id):
        result = store.result(row.id)
        if result is None or row.started_at is None or row.finished_at is None:
            continue
        tasks.append(
            TaskSummary(
                task_id=row.id,
                status=result.status,
                attempts=result.attempts,
                usage=result.usage,
                classic=result.usage_classic_estimate,
                started_at=datetime.fromtimestamp(row.started_at, UTC),
                ended_at=datetime.fromtimestamp(row.finished_at, UTC),
                scripted=result.scripted,
            )
        )
    return RunSummary(
        run_id=run_id, tasks=tasks, stages=[StageSummary(name="main", orchestration_steps=1)]
    )


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
