"""Labels on every container execloop starts, and the one reaper that removes orphans.

A container is an orphan when the process that started it is gone: containers are children of
the Docker daemon, not of execloop, so nothing else would ever remove them. The owner is
recorded as ``host:pid:start-ticks`` so a recycled pid is not mistaken for the owner.
``remove_orphans`` sweeps everything a dead owner left (containers, temporary directories,
cgroups); ``remove_orphans_once`` is the containers' sweep before a process's first sandbox.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from execloop.errors import ExecloopError
from execloop.sandboxes.janitor import process_start_ticks

__all__ = [
    "LABEL_BACKEND",
    "LABEL_MANAGED",
    "LABEL_NODE",
    "LABEL_OWNER",
    "LABEL_SESSION",
    "Orphans",
    "is_orphan",
    "owner_id",
    "reap_lost_nodes",
    "reap_orphans",
    "remove_orphans",
    "remove_orphans_once",
    "sandbox_labels",
    "set_node_label",
]

LABEL_MANAGED = "org.execloop.managed"
LABEL_OWNER = "org.execloop.owner"
LABEL_BACKEND = "org.execloop.backend"
LABEL_SESSION = "org.execloop.session"
# The cluster node (a Ray node id) whose sub-agents started the container; set per process
LABEL_NODE = "org.execloop.node"
_node: str | None = None

log = logging.getLogger("execloop.sandboxes.reaper")
_swept = threading.Event()


def owner_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{process_start_ticks(pid)}"


def set_node_label(node: str | None) -> None:
    """Label every container this process starts from now on with cluster node ``node``
    (a node's pool actor does this once), so the node's reaper can find them."""
    global _node
    _node = node


def sandbox_labels(*, backend: str, session: str) -> dict[str, str]:
    labels = {
        LABEL_MANAGED: "1",
        LABEL_OWNER: owner_id(),
        LABEL_BACKEND: backend,
        LABEL_SESSION: session,
    }
    if _node is not None:
        labels[LABEL_NODE] = _node
    return labels


def reap_lost_nodes(client: Any, *, lost: set[str]) -> list[str]:
    """Remove the containers labelled with a lost cluster node: its processes died with it,
    but its containers are the daemon's children and live on. Only nodes known to be lost
    are named: another cluster's containers on the same daemon are not this caller's."""
    listed = client.containers.list(all=True, filters={"label": LABEL_NODE}, ignore_removed=True)
    return _remove(
        [c for c in listed if c.labels.get(LABEL_NODE) in lost], "container(s) of lost nodes"
    )


def _remove(containers: list[Any], what: str) -> list[str]:
    """Remove ``containers``; the short ids of those removed (one already gone is skipped)."""
    removed = []
    for container in containers:
        try:
            container.remove(force=True)
        except Exception as exc:  # already gone or being removed: nothing left to do
            log.debug("could not remove %s: %s", container.short_id, exc)
            continue
        removed.append(container.short_id)
    if removed:
        log.info("reaped %d %s: %s", len(removed), what, removed)
    return removed


def is_orphan(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host's container: not ours to judge
    return process_start_ticks(int(pid_text)) != ticks


def reap_orphans(client: Any, *, everything: bool = False) -> list[str]:
    """Remove execloop containers whose owner is gone (all of them with ``everything``)."""
    # ignore_removed: a container removed between listing and inspection is not an error
    listed = client.containers.list(all=True, filters={"label": LABEL_MANAGED}, ignore_removed=True)
    orphans = [c for c in listed if everything or is_orphan(c.labels.get(LABEL_OWNER, ""))]
    return _remove(orphans, "orphaned sandbox container(s)")


@dataclass(frozen=True)
class Orphans:
    """What ``remove_orphans`` removed; ``no_containers`` says why no container was looked at."""

    containers: list[str]
    temp_dirs: list[Path]
    cgroups: list[Path]
    no_containers: str | None = None


def remove_orphans(*, everything: bool = False) -> Orphans:
    """Remove what dead owners left: containers (all of execloop's with ``everything``),
    temporary directories and cgroups. Blocking; a host without Docker has no containers."""
    from execloop.sandboxes.cgroup_host import remove_orphaned_cgroups
    from execloop.sandboxes.placements.container import default_client
    from execloop.sandboxes.tempdirs import orphaned_temp_dirs, remove_temp_dir

    directories = orphaned_temp_dirs()
    for path in directories:
        remove_temp_dir(path)
    cgroups = remove_orphaned_cgroups()
    try:
        containers, why = reap_orphans(default_client(), everything=everything), None
    except ExecloopError as exc:  # no daemon here: no container of ours can be orphaned in it
        containers, why = [], str(exc)
    return Orphans(containers, directories, cgroups, why)


async def remove_orphans_once(client: Any = None) -> None:
    """Remove the containers of dead owners, once per process (before its first sandbox);
    best effort: a daemon that is missing or refuses a listing is no reason to fail."""
    if _swept.is_set():
        return
    _swept.set()
    from execloop.sandboxes.placements.container import default_client, docker_call

    try:
        if client is None:
            client = await anyio.to_thread.run_sync(default_client)
        await docker_call(reap_orphans, client)
    except ExecloopError as exc:
        log.debug("no orphan reaping: %s", exc)
