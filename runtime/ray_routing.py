"""Where a task runs on a Ray cluster: the node that offers what its sandbox spec asks for.

Pure bookkeeping (no Ray here, so it is tested on its own). A node offers CPUs, the GPU ids Ray
gave its pool actor, the sandbox backends that work there and the images it holds. A task fits
a node that has enough CPUs in total (a sandbox's ``cpus`` is a limit, not a reservation: a
sub-agent mostly waits for its model), enough *free* GPUs (GPUs are handed out, one task each),
the backend, and the image if its sandbox runs one (``host_offer.image_needed``). Of the nodes
that fit, the least busy one per CPU wins (a task without GPUs prefers a node without them).
Under Ray, ``spec.gpus`` says how many GPUs (a count, ``all``, or as many as the ids it pins):
the ids are the ones Ray gave that node, mapped to Docker device requests there (``with_gpus``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from execloop.errors import ConfigError
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["GpuIds", "NodeInfo", "choose_node", "gpus_wanted", "why_unfit", "with_gpus"]


@dataclass
class NodeInfo:
    """What one node offers, and what the broker has placed on it."""

    node_id: str
    cpus: float
    gpus: tuple[str, ...] = ()
    backends: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    running: int = 0
    gpus_in_use: int = 0

    @property
    def load(self) -> float:
        return self.running / max(self.cpus, 1.0)


def gpus_wanted(spec: SandboxSpec, *, on_node: int) -> int:
    """How many GPUs ``spec`` asks for on a node with ``on_node`` of them: pinned ids count as
    their number (the node's own ids replace them), ``all`` as every GPU there (at least one)."""
    if spec.gpus == "all":
        return max(on_node, 1)
    if isinstance(spec.gpus, int):
        return spec.gpus
    return len(spec.gpus)


def why_unfit(node: NodeInfo, spec: SandboxSpec, *, image: str | None, now: bool) -> str | None:
    """Why ``spec`` cannot run on ``node`` (``now``: counting GPUs in use), or None if it can."""
    if spec.backend not in node.backends:
        return f"no {spec.backend} backend"
    if spec.cpus > node.cpus:
        return f"{node.cpus:g} CPUs < {spec.cpus:g}"
    free = len(node.gpus) - (node.gpus_in_use if now else 0)
    wanted = gpus_wanted(spec, on_node=len(node.gpus))
    if wanted > free:
        return f"{free} {'free ' if now else ''}GPUs < {wanted}"
    if image is not None and image not in node.images:
        return f"no image {image}"
    return None


def choose_node(
    nodes: Iterable[NodeInfo], spec: SandboxSpec, *, image: str | None
) -> NodeInfo | None:
    """The least busy node ``spec`` fits now; None if every node that could run it is busy.

    Raises ``ConfigError`` when no node could ever run it, saying what each one lacks."""
    nodes = list(nodes)
    able = [n for n in nodes if why_unfit(n, spec, image=image, now=False) is None]
    if not able:
        reasons = "; ".join(
            f"{n.node_id[:12]}: {why_unfit(n, spec, image=image, now=False)}" for n in nodes
        )
        raise ConfigError(
            f"no node of the Ray cluster can run this sandbox spec ({reasons or 'no nodes'}); "
            "add a node with the resources, or ask for fewer"
        )
    free = [n for n in able if why_unfit(n, spec, image=image, now=True) is None]
    # a task without GPUs leaves GPU nodes to those that need them, when load is equal
    return min(
        free, key=lambda n: (n.load, bool(n.gpus) and not spec.gpus, n.node_id), default=None
    )


@dataclass
class GpuIds:
    """The GPU ids Ray gave a node's pool actor, handed out to one sandbox each."""

    ids: Sequence[str]
    _taken: set[str] = field(default_factory=set)

    def take(self, count: int) -> tuple[str, ...]:
        free = [gpu for gpu in self.ids if gpu not in self._taken]
        if count > len(free):
            raise ConfigError(f"{count} GPUs asked for, {len(free)} free on this node")
        chosen = tuple(free[:count])
        self._taken.update(chosen)
        return chosen

    def give_back(self, ids: Iterable[str]) -> None:
        self._taken.difference_update(ids)


def with_gpus(spec: SandboxSpec, ids: Sequence[str]) -> SandboxSpec:
    """``spec`` pinned to the node's GPU ``ids`` (Docker device requests name these ids)."""
    return spec.model_copy(update={"gpus": tuple(ids)})
