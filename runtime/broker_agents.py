"""How a broker runs one task it owns: a ``SubAgent`` in this process (its skill resolved once
per broker, its registry the broker's or the task's own, every event persisted as it
happens), or the task's loop on a Ray node (its attempts stored when its result is in)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from execloop.errors import ConfigError, ExecloopError
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.checkpoints import store_checkpoint_root
from execloop.runtime.loop import LoopEvent, SubAgent
from execloop.runtime.models.base import Model
from execloop.runtime.ownership import BrokerOwner
from execloop.runtime.ray_cluster import RayCluster
from execloop.runtime.skills import Skill, resolve_skill
from execloop.runtime.store import TaskStore
from execloop.runtime.task import ErrorKind, Result, Task, TaskStatus
from execloop.sandboxes import Sandbox, SandboxSpec

__all__ = ["AgentRunner", "NotOwner"]

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class NotOwner(Exception):
    """The task was taken over by another broker (our lease had expired) before it started."""


@dataclass
class AgentRunner:
    """Runs an owned task's loop to its result (see the module docstring)."""

    store: TaskStore
    owner: BrokerOwner
    sandbox_factory: Callable[[SandboxSpec], Sandbox]
    registry: ToolRegistry | Callable[[Task], ToolRegistry] | None
    skill_dirs: tuple[Path, ...]
    outputs_dir: Path | None  # a passed task's verified workspace goes to <it>/<task id>
    observe: Callable[[str, LoopEvent], None] | None  # (task id, event) for live views
    cluster: RayCluster | None
    _skills: dict[str, Skill] = field(default_factory=dict)  # loaded once, not once per task

    def _skill(self, name: str) -> Skill:
        if name not in self._skills:
            self._skills[name] = resolve_skill(name, skill_dirs=self.skill_dirs)
        return self._skills[name]

    async def run(self, task: Task, model: Model) -> Result:
        """The task's one result; ``NotOwner`` if another broker holds it now."""
        launch = self.store.mark_running(task.id, owner=self.owner.id)
        if launch is None:
            raise NotOwner(task.id)
        if self.cluster is not None:
            return await self._run_on_cluster(self.cluster, task, model, launch)
        try:
            if self.outputs_dir is not None and not _PLAIN_ID.fullmatch(task.id):
                raise ConfigError(f"task id {task.id!r} cannot name a folder in outputs_dir")
            skill = self._skill(task.skill) if task.skill else None
            # one registry for every task, or (a factory) one per task: tools with state of
            # their own, which tasks, a resumed task's twin included, must not share
            registry = self.registry(task) if callable(self.registry) else self.registry
            agent = SubAgent(
                task,
                model=model,
                skill=skill,
                sandbox_factory=self.sandbox_factory,
                on_event=lambda event: self.persist(task.id, launch, event),
                registry=registry,
                outputs_dir=None if self.outputs_dir is None else self.outputs_dir / task.id,
                checkpoint_root=store_checkpoint_root(self.store.path),
            )
        except ExecloopError as exc:
            return Result(
                task_id=task.id,
                status=TaskStatus.ERROR,
                error=f"{type(exc).__name__}: {exc}",
                error_kind=ErrorKind.of(exc),
            )
        if registry is None or registry is self.registry:
            return await agent.run()
        async with registry:  # the task's own registry is closed with its task
            return await agent.run()

    async def _run_on_cluster(
        self, cluster: RayCluster, task: Task, model: Model, launch: int
    ) -> Result:
        """The task's loop runs on a node; its attempts are stored when its result is in (a
        node lost mid-task takes its attempts with it, and the task is launched again)."""
        launches = [launch]

        def relaunched() -> None:
            again = self.store.mark_running(task.id, owner=self.owner.id)
            if again is None:
                raise NotOwner(task.id)
            launches.append(again)

        result = await cluster.run(task, model, skill_dirs=self.skill_dirs, relaunched=relaunched)
        for record in result.attempt_log:
            self.persist(
                task.id, launches[-1], LoopEvent("recorded", record.number, {"record": record})
            )
        if self.observe is not None:
            self.observe(task.id, LoopEvent("finished", result.attempts, {"result": result}))
        return result

    def persist(self, task_id: str, launch: int, event: LoopEvent) -> None:
        if self.observe is not None:
            self.observe(task_id, event)
        if event.kind == "recorded":
            self.store.add_attempt(task_id, launch, event.data["record"])
        elif event.kind == "progress":
            self.store.add_progress(task_id, launch, event.attempt, event.data["event"])
        elif event.kind == "tool_calls":
            records = [r.model_dump(mode="json") for r in event.data["records"]]
            self.store.add_tool_calls(task_id, records)
