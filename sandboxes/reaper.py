"""Labels on every container execloop starts, and the reaper that removes orphans.

A container is an orphan when the process that started it is gone: containers are children of
the Docker daemon, not of execloop, so nothing else would ever remove them. The owner is
recorded as ``host:pid:start-ticks`` so a recycled pid is not mistaken for the owner.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from execloop.sandboxes.janitor import process_start_ticks

__all__ = [
    "LABEL_BACKEND",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "LABEL_SESSION",
    "is_orphan",
    "owner_id",
    "reap_orphans",
    "sandbox_labels",
]

LABEL_MANAGED = "org.execloop.managed"
LABEL_OWNER = "org.execloop.owner"
LABEL_BACKEND = "org.execloop.backend"
LABEL_SESSION = "org.execloop.session"

log = logging.getLogger("execloop.sandboxes.reaper")


def owner_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{process_start_ticks(pid)}"


def sandbox_labels(*, backend: str, session: str) -> dict[str, str]:
    return {
        LABEL_MANAGED: "1",
        LABEL_OWNER: owner_id(),
        LABEL_BACKEND: backend,
        LABEL_SESSION: session,
    }


def is_orphan(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another host's container: not ours to judge
    return process_start_ticks(int(pid_text)) != ticks


def reap_orphans(client: Any, *, everything: bool = False) -> list[str]:
    """Remove execloop containers whose owner is gone (all of them with ``everything``)."""
    removed = []
    # ignore_removed: a container removed between listing and inspection is not an error
    listed = client.containers.list(all=True, filters={"label": LABEL_MANAGED}, ignore_removed=True)
    for container in listed:
        owner = container.labels.get(LABEL_OWNER, "")
        if everything or is_orphan(owner):
            try:
                container.remove(force=True)
            except Exception as exc:  # already gone or being removed: nothing left to do
                log.debug("could not remove %s: %s", container.short_id, exc)
                continue
            removed.append(container.short_id)
    if removed:
        log.info("reaped %d orphaned sandbox container(s): %s", len(removed), removed)
    return removed
