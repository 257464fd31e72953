"""The per-node sandbox-pool actor of the Ray backend: sub-agent loops run here, on a Ray worker
of the node, next to the sandboxes they start (``runtime/ray_cluster.py`` starts one per node).

The actor bounds its node's sandboxes (``SandboxGate``: live ones and concurrent starts), hands
out the GPU ids Ray gave it (one set per task, mapped to Docker device requests), labels every
container with its node id, and reaps the containers of nodes that are gone: Ray never removes
what it did not start, and a container is the Docker daemon's child, not the worker's.

A run is keyed by task id: a broker that lost contact for a moment (``ActorUnavailableError``)
and asks again is answered by the same run, not a second one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread

from execloop.errors import ExecloopError
from execloop.runtime.loop import SubAgent
from execloop.runtime.models.base import Model, ModelReply, ModelRequest
from execloop.runtime.ray_routing import GpuIds, gpus_wanted, with_gpus
from execloop.runtime.skills import resolve_skill
from execloop.runtime.task import ErrorKind, Result, Task, TaskStatus
from execloop.sandboxes import Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.gate import SandboxGate
from execloop.sandboxes.host_offer import host_offer
from execloop.sandboxes.reaper import reap_lost_nodes, reap_orphans, set_node_label

__all__ = ["ModelBySpec", "NodeAgent"]

log = logging.getLogger("execloop.runtime.ray_node")


class ModelBySpec:
    """A model sent to a node as its ``--model`` spec and built there on first use: a
    provider's client (sockets, locks) cannot travel between processes, a spec can."""

    def __init__(self, spec: str, *, name: str, scripted: bool) -> None:
        self.spec = spec
        self._name, self._scripted = name, scripted
        self._model: Model | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def scripted(self) -> bool:
        return self._scripted

    async def complete(self, request: ModelRequest) -> ModelReply:
        if self._model is None:
            from execloop.runtime.models import parse_model

            self._model = parse_model(self.spec)
        return await self._model.complete(request)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # the built client stays where it was built


class NodeAgent:
    """One per Ray node (a plain class: the driver makes it an actor pinned to the node)."""

    def __init__(self, node_id: str, *, max_live: int | None, max_starting: int | None) -> None:
        import ray

        set_node_label(node_id)
        self.node_id = node_id
        self._gate = SandboxGate(create_sandbox, max_live=max_live, max_starting=max_starting)
        # the node's GPUs were given to this actor (num_gpus = the node's): its tasks share them
        self._gpus = GpuIds([str(gpu) for gpu in ray.get_gpu_ids()])
        self._runs: dict[str, asyncio.Task[str]] = {}

    async def ping(self) -> str:
        return self.node_id

    async def describe(self) -> dict[str, Any]:
        """What this node offers: working backends, local images, GPU ids."""
        offer = await host_offer()
        return {
            "backends": sorted(offer.backends),
            "images": sorted(offer.images),
            "gpus": list(self._gpus.ids),
        }

    async def run(self, task_json: str, model: Model, skill_dirs: Sequence[str]) -> str:
        """The task's Result (JSON); the same run if it was asked for before."""
        task = Task.model_validate_json(task_json)
        run = self._runs.get(task.id)
        if run is None:
            run = asyncio.get_running_loop().create_task(
                self._run(task, model, tuple(Path(d) for d in skill_dirs))
            )
            self._runs[task.id] = run
        return await asyncio.shield(run)

    def forget(self, task_id: str) -> None:
        """The broker has the task's result: drop the finished run."""
        run = self._runs.get(task_id)
        if run is not None and run.done():
            del self._runs[task_id]

    async def stop(self) -> int:
        """Cancel every unfinished run (their sandboxes are closed); how many there were."""
        unfinished = [run for run in self._runs.values() if not run.done()]
        for run in unfinished:
            run.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        self._runs.clear()
        return len(unfinished)

    async def reap(self, lost: Sequence[str]) -> list[str]:
        """Remove this host's containers of the ``lost`` nodes and of dead owners."""
        try:
            return await anyio.to_thread.run_sync(_reap_host, set(lost))
        except ExecloopError:  # no Docker daemon on this node: no container to reap
            return []

    async def _run(self, task: Task, model: Model, skill_dirs: tuple[Path, ...]) -> str:
        taken: tuple[str, ...] = ()
        try:
            skill = resolve_skill(task.skill, skill_dirs=skill_dirs) if task.skill else None
            spec = skill.sandbox_spec(task.sandbox) if skill else task.sandbox
            taken = self._gpus.take(
                gpus_wanted(spec, on_node=len(self._gpus.ids)) if spec.gpus else 0
            )
            factory = _pinned(self._gate, taken) if taken else self._gate
            agent = SubAgent(task, model=model, skill=skill, sandbox_factory=factory)
        except ExecloopError as exc:
            self._gpus.give_back(taken)
            return Result(
                task_id=task.id,
                status=TaskStatus.ERROR,
                error=f"{type(exc).__name__}: {exc}",
                error_kind=ErrorKind.of(exc),
            ).model_dump_json()
        try:
            return (await agent.run()).model_dump_json()
        finally:
            self._gpus.give_back(taken)


def _pinned(gate: SandboxGate, ids: tuple[str, ...]) -> Callable[[SandboxSpec], Sandbox]:
    """Sandboxes of ``gate`` pinned to the GPU ids Ray gave this node."""
    return lambda spec: gate(with_gpus(spec, ids))


def _reap_host(lost: set[str]) -> list[str]:
    from execloop.sandboxes.placements.container import default_client

    client = default_client()
    return reap_lost_nodes(client, lost=lost) + reap_orphans(client)
