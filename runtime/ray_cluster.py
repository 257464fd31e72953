"""The broker's Ray backend: sub-agents run on the nodes of a Ray cluster (``ray`` extra).

    async with RayCluster("auto") as cluster:        # or an address, or "local"
        async with Broker(db="runs.db", model=model, cluster=cluster) as broker:
            results = await broker.map(tasks)

The broker stays where it is (it alone writes the store); each task's loop runs in the pool
actor of one node (``ray_node.NodeAgent``), chosen by what the task's sandbox asks for
(``ray_routing``). One actor per node: started when a node appears, dropped when it is gone
(``ray.nodes()`` is watched). Liveness is checked here, not left to Ray: a call that fails with
``ActorUnavailableError`` is followed by pings until the actor answers (the same run is asked
for again) or ``ActorDiedError`` says the node is lost; the task is then queued again on another
node, at most ``max_node_losses`` times. The store keeps exactly one result per task whatever
happens. ``"local"`` starts a one-machine cluster in this process (stopped on exit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.to_thread

from execloop.errors import ConfigError
from execloop.runtime.models.base import Model
from execloop.runtime.ray_node import NodeAgent
from execloop.runtime.ray_routing import NodeInfo, choose_node, gpus_wanted
from execloop.runtime.task import ErrorKind, Result, Task, TaskStatus
from execloop.sandboxes.host_offer import image_needed

__all__ = ["RayCluster"]

log = logging.getLogger("execloop.runtime.ray_cluster")

_PING_S = 5.0  # one liveness probe
_INSTALL = "install the ray extra: pip install 'execloop[ray]'"


class _NodeLost(Exception):
    """The node running a task is gone (its actor died)."""


@dataclass
class _Node:
    actor: Any  # ray.actor.ActorHandle of NodeAgent
    info: NodeInfo


class RayCluster:
    """A connection to a Ray cluster and one pool actor per alive node."""

    def __init__(
        self,
        address: str = "auto",
        *,
        max_node_losses: int = 3,
        max_live_per_node: int | None = None,
        max_starting_per_node: int | None = 4,
        watch_s: float = 1.0,
        probe_s: float = 30.0,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        if not address:
            raise ConfigError("--ray needs auto, local or a cluster address such as HOST:6379")
        if max_node_losses < 0:
            raise ConfigError(f"max_node_losses must be >= 0, not {max_node_losses}")
        self.address = address
        self.max_node_losses = max_node_losses
        self._node_limits = {"max_live": max_live_per_node, "max_starting": max_starting_per_node}
        self.watch_s = watch_s
        self.probe_s = probe_s
        self._init_options = dict(init_options or {})
        self._ray: Any = None
        self._owns_connection = False
        self._nodes: dict[str, _Node] = {}
        self._lost: set[str] = set()  # node ids seen dead: never used again
        self._reaped: set[str] = set()  # lost nodes whose containers were reaped
        self._changed = anyio.Condition()
        self._tasks: anyio.abc.TaskGroup | None = None
        self.node_losses = 0  # tasks queued again because their node was lost (for reports)
        self.reaped: list[str] = []  # containers of lost nodes removed by the nodes' reapers

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self._connect)
        try:
            await self.refresh()
            if not self._nodes:
                raise ConfigError(f"the Ray cluster at {self.address} has no node that answers")
            self._tasks = anyio.create_task_group()
            await self._tasks.__aenter__()
            self._tasks.start_soon(self._watch)
        except BaseException:
            await self._disconnect()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(None, None, None)
        await self._disconnect()

    def _connect(self) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError(f"the Ray backend needs ray: {_INSTALL}") from exc
        self._ray = ray
        if ray.is_initialized():  # the caller connected (e.g. to a test cluster): use it
            return
        options: dict[str, Any] = {"log_to_driver": False, **self._init_options}
        if self.address == "local":
            # a driver killed earlier leaves this file, and ray.init() then tries to join
            # the dead cluster instead of starting one
            _ray_temp_dir().joinpath("ray_current_cluster").unlink(missing_ok=True)
            options.setdefault("include_dashboard", False)
        else:
            _check_reachable(self.address)
            options["address"] = self.address
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {self.address!r} ({exc}); start one with "
                "`ray start --head`, pass its address, or use --ray local"
            ) from exc
        self._owns_connection = True

    async def _disconnect(self) -> None:
        with anyio.CancelScope(shield=True):
            nodes, self._nodes = list(self._nodes.values()), {}
            for node in nodes:  # unfinished loops close their sandboxes before the actor goes
                with anyio.move_on_after(10), contextlib.suppress(Exception):
                    await node.actor.stop.remote()
                with contextlib.suppress(Exception):
                    self._ray.kill(node.actor)
            if self._owns_connection:
                await anyio.to_thread.run_sync(self._ray.shutdown)

    # -- nodes -----------------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        return tuple(node.info for node in self._nodes.values())

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(self.watch_s)
            try:
                await self.refresh()
            except Exception as exc:  # a GCS hiccup: look again next time
                log.warning("could not list the Ray cluster's nodes: %s", exc)

    async def refresh(self) -> None:
        """Start a pool actor on each new node, drop those of nodes that are gone."""
        listed = await anyio.to_thread.run_sync(self._ray.nodes)
        alive = {n["NodeID"]: n for n in listed if n.get("Alive")}
        for node_id in [node_id for node_id in self._nodes if node_id not in alive]:
            await self._drop(node_id)
        for node_id, node in alive.items():
            if node_id not in self._nodes and node_id not in self._lost:
                await self._add(node_id, node.get("Resources", {}))
        if self._lost - self._reaped:  # their containers are orphans: each host reaps its own
            self._reaped |= self._lost
            await self.reap()

    async def reap(self) -> list[str]:
        """Ask every node's actor to remove its host's containers of the lost nodes; the ids
        of the containers removed."""
        lost, removed = sorted(self._lost), []
        for node in list(self._nodes.values()):
            with contextlib.suppress(Exception), anyio.move_on_after(30):
                removed += await node.actor.reap.remote(lost)
        self.reaped += removed
        return removed

    async def _add(self, node_id: str, resources: dict[str, float]) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor = (
            self._ray.remote(NodeAgent)
            .options(
                num_cpus=0,
                num_gpus=resources.get("GPU", 0),  # the node's GPUs go to its tasks
                max_restarts=0,
                max_concurrency=10_000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
            )
            .remote(node_id, **self._node_limits)
        )
        try:
            with anyio.fail_after(60):
                described = await actor.describe.remote()
        except Exception as exc:  # the node went away while its actor started
            log.warning("no pool actor on node %s: %s", node_id[:12], exc)
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
            return
        info = NodeInfo(
            node_id=node_id,
            cpus=float(resources.get("CPU", 0)),
            gpus=tuple(described["gpus"]),
            backends=frozenset(described["backends"]),
            images=frozenset(described["images"]),
        )
        self._nodes[node_id] = _Node(actor, info)
        log.info("node %s joined: %s", node_id[:12], info)
        async with self._changed:
            self._changed.notify_all()

    async def _drop(self, node_id: str) -> None:
        node = self._nodes.pop(node_id, None)
        self._lost.add(node_id)
        if node is not None:
            log.warning("node %s is gone; its tasks are queued again", node_id[:12])
            with contextlib.suppress(Exception):
                self._ray.kill(node.actor)
        async with self._changed:
            self._changed.notify_all()

    # -- running a task --------------------------------------------------------------------
    async def run(
        self,
        task: Task,
        model: Model,
        *,
        skill_dirs: Sequence[Path] = (),
        relaunched: Callable[[], None] = lambda: None,
    ) -> Result:
        """The task's Result from a node that fits it; queued again (``relaunched`` is called)
        when its node is lost, up to ``max_node_losses`` times."""
        spec, image = task.sandbox, image_needed(task.sandbox)
        dirs = [str(d) for d in skill_dirs]
        for losses in range(self.max_node_losses + 1):
            if losses:
                relaunched()
            try:
                node = await self._place(spec, image)
            except ConfigError as exc:
                return _error(task, f"ConfigError: {exc}", ErrorKind.INVALID_TASK)
            node.info.running += 1
            gpus = gpus_wanted(spec, on_node=len(node.info.gpus))
            node.info.gpus_in_use += gpus
            try:
                raw = await self._call(node, task.model_dump_json(), model, dirs)
            except _NodeLost:
                self.node_losses += 1
                continue
            except ConfigError as exc:
                return _error(task, f"ConfigError: {exc}", ErrorKind.INVALID_TASK)
            finally:
                node.info.running -= 1
                node.info.gpus_in_use -= gpus
                async with self._changed:
                    self._changed.notify_all()
            with contextlib.suppress(Exception):
                node.actor.forget.remote(task.id)
            return Result.model_validate_json(raw)
        return _error(
            task,
            f"the task's Ray node was lost {self.max_node_losses + 1} times (max_node_losses="
            f"{self.max_node_losses}); check the cluster's health",
            ErrorKind.SANDBOX,
        )

    async def _place(self, spec: Any, image: str | None) -> _Node:
        """The node to run on, waiting while every node that fits is busy."""
        async with self._changed:
            while True:
                chosen = choose_node(self.nodes, spec, image=image)
                if chosen is not None:
                    return self._nodes[chosen.node_id]
                await self._changed.wait()

    async def _call(self, node: _Node, task_json: str, model: Model, dirs: list[str]) -> str:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        while True:
            try:
                ref = node.actor.run.remote(task_json, model, dirs)
            except (TypeError, ValueError) as exc:  # Ray could not pickle the arguments
                raise ConfigError(
                    f"the model {model.name!r} cannot be sent to a Ray node ({exc}); give the "
                    "broker a picklable model, e.g. ModelBySpec('anthropic:MODEL', ...)"
                ) from exc
            try:
                result: str = await ref
                return result
            except ActorUnavailableError:
                if not await self._alive(node):
                    await self._drop(node.info.node_id)
                    raise _NodeLost from None
                # alive again: asking again is answered by the same run on that node
            except (ActorDiedError, RayActorError):
                await self._drop(node.info.node_id)
                raise _NodeLost from None
            except BaseException:  # cancelled: stop the remote run too
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref)
                raise

    async def _alive(self, node: _Node) -> bool:
        """Probe an actor that was unavailable: True once it answers, False once it is dead
        (``ActorDiedError``, its node gone) or silent for ``probe_s``."""
        from ray.exceptions import ActorUnavailableError, RayActorError

        with anyio.move_on_after(self.probe_s):
            while node.info.node_id in self._nodes:
                try:
                    with anyio.fail_after(_PING_S):
                        await node.actor.ping.remote()
                    return True
                except (ActorUnavailableError, TimeoutError):
                    await anyio.sleep(0.5)
                except RayActorError:  # ActorDiedError and the like: it will not come back
                    return False
        return False


def _ray_temp_dir() -> Path:
    """Where Ray keeps its sessions and the current cluster's address (as Ray decides it)."""
    return Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp", "ray")


def _check_reachable(address: str) -> None:
    """Refuse at once an explicit HOST:PORT where nothing listens: ray.init() would retry it
    for minutes. ``auto`` (and a name Ray resolves itself) is left to Ray."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({exc}); check the address (`ray status` on "
            "the head prints it), use --ray auto on a node of the cluster, or --ray local"
        ) from exc


def _error(task: Task, error: str, kind: ErrorKind) -> Result:
    return Result(task_id=task.id, status=TaskStatus.ERROR, error=error, error_kind=kind)
