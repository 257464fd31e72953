"""What ``execloop task`` runs: one task through a ``SubAgent``, or through the ``Broker`` on a
database (so ``execloop runs``/``report`` show it), with ``execloop.toml``'s tool sources and
the verified workspace kept in ``--out``.

``--param KEY=VALUE`` values become the task's ``task.json`` (over an ``--input task.json``),
validated against the skill's ``inputs`` schema before attempt 1.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.broker import Broker
from execloop.runtime.cli_boundary import flags
from execloop.runtime.config import Config
from execloop.runtime.loop import LoopEvent, SubAgent
from execloop.runtime.models.base import Model
from execloop.runtime.skills import Skill
from execloop.runtime.task import Result, Task
from execloop.runtime.task_json import TaskJson, given_task_json
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = ["TaskRun", "parse_params", "task_json"]


def parse_params(params: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON is that value (``3``, ``true``,
    ``["id"]``), any other is the string itself."""
    values: dict[str, Any] = {}
    for param in params:
        key, sep, text = param.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{param!r} is not KEY=VALUE", param_hint="--param")
        try:
            values[key.strip()] = json.loads(text)
        except ValueError:
            values[key.strip()] = text
    return values


@contextmanager
def task_json(
    skill: Skill | None, inputs: Sequence[Path], params: dict[str, Any]
) -> Iterator[tuple[Path, ...]]:
    """``inputs`` with ``params`` written into a ``task.json`` (over the one among ``inputs``,
    which it replaces) in a temporary folder removed afterwards; ``inputs`` as given when
    there are no params."""
    if not params:
        yield tuple(inputs)
        return
    if skill is None:
        raise click.UsageError("--param gives a skill's inputs: name the skill with --skill")
    given = given_task_json(inputs)
    base: dict[str, Any] = {}
    if given is not None:
        with flags("--input"):
            base = skill.check_task_json(given)
    with flags("--param"):
        merged = skill.task_inputs({**base, **params})
    written = TaskJson(inputs, merged)
    try:
        yield written.inputs
    finally:
        written.close()


@dataclass(kw_only=True)
class TaskRun:
    """One task to its one ``Result``; ``run_id`` is set when it ran through the broker."""

    task: Task
    model: Model
    skill: Skill | None
    skill_dirs: tuple[Path, ...]
    config: Config
    db: Path | None
    out_dir: Path | None
    on_event: Callable[[LoopEvent], None]
    run_id: str | None = None
    ray_address: str | None = None  # run on a Ray cluster (auto, HOST:PORT or local)
    model_spec: str | None = None  # how a node builds the model (``ModelBySpec``)

    async def run(self) -> Result:
        async with AsyncExitStack() as stack:
            registry: ToolRegistry | None = None
            task = self.task
            if self.config.tools.mcp:  # execloop.toml's tool sources, all allowed
                registry = await stack.enter_async_context(ToolRegistry())
                names = await self.config.add_tools(registry)
                task = task.model_copy(update={"tools": tuple(names)})
            if self.db is None:
                agent = SubAgent(
                    task,
                    model=self.model,
                    skill=self.skill,
                    on_event=self.on_event,
                    registry=registry,
                    outputs_dir=self.out_dir,
                )
                result = await agent.run()
            else:
                result = await self._through_broker(task, self.db, registry, stack)
        return result

    async def _through_broker(
        self, task: Task, db: Path, registry: ToolRegistry | None, stack: AsyncExitStack
    ) -> Result:
        kept: Path | None = None
        if self.out_dir is not None:  # the broker keeps outputs_dir/<task id>: moved after
            kept = make_temp_dir("kept")
            stack.callback(remove_temp_dir, kept)
        cluster, model = None, self.model
        if self.ray_address is not None:
            from execloop.runtime.ray_cluster import RayCluster
            from execloop.runtime.ray_node import ModelBySpec

            cluster = await stack.enter_async_context(RayCluster(self.ray_address))
            if self.model_spec is not None:
                model = ModelBySpec(self.model_spec, name=model.name, scripted=model.scripted)
        broker = await stack.enter_async_context(
            Broker(
                db=db,
                model=model,
                max_concurrency=1,
                registry=registry,
                skill_dirs=self.skill_dirs,
                outputs_dir=kept,
                on_event=lambda task_id, event: self.on_event(event),
                cluster=cluster,
            )
        )
        self.run_id = broker.run_id
        await broker.submit(task)
        result = await broker.result(task.id)
        if kept is not None and self.out_dir is not None and (kept / task.id).is_dir():
            self.out_dir.mkdir(exist_ok=True)
            for item in (kept / task.id).iterdir():
                shutil.move(item, self.out_dir / item.name)
        return result
