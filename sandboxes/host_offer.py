"""What this host can run: the backends that work here and the images its Docker daemon holds.

A cluster node reports this so that tasks are sent where their sandbox can start
(``runtime/ray_routing.py``); runtime/ never names a backend itself, it asks here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio.to_thread

from execloop.errors import ExecloopError
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["HostOffer", "host_offer", "image_needed"]

log = logging.getLogger("execloop.sandboxes.host_offer")


@dataclass(frozen=True)
class HostOffer:
    backends: frozenset[str]
    images: frozenset[str]


async def host_offer() -> HostOffer:
    """Probe the backends here (a bubblewrap sandbox, the Docker daemon); never raises."""
    backends, images = {"restricted"}, frozenset[str]()
    try:
        from execloop.sandboxes.placements.bubblewrap import available_tools

        await available_tools()
        backends |= {"local", "jupyter"}
    except ExecloopError as exc:
        log.info("no local backend here: %s", exc)
    try:
        images = frozenset(await anyio.to_thread.run_sync(_local_images))
        backends |= {"docker", "jupyter"}
    except ExecloopError as exc:
        log.info("no docker backend here: %s", exc)
    return HostOffer(frozenset(backends), images)


def image_needed(spec: SandboxSpec) -> str | None:
    """The image a sandbox of ``spec`` runs, which its host must hold; None if none."""
    if spec.backend != "docker":
        return None
    if spec.image is not None:
        return spec.image
    from execloop.sandboxes.placements.container import default_image

    return default_image()


def _local_images() -> list[str]:
    from execloop.sandboxes.placements.container import default_client

    return [tag for image in default_client().images.list() for tag in image.tags]
