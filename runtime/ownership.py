"""Who owns a task in the store, and whether that owner is still alive.

A broker claims every task it runs under an owner id ``host:pid:start-ticks:token``: the
process (as the container reaper names it, so a recycled pid is not mistaken for the owner)
plus a token per broker, since one process may run several brokers one after another. An
owner is judged gone when

- it is a broker of this process that has stopped (the token is no longer held here);
- it is another process on this host that no longer exists (pid + start time);
- it lives on another host (its pids mean nothing here) and its lease has expired: a live
  broker renews the leases of its tasks from a heartbeat thread, so a busy event loop cannot
  let them lapse.

Only a gone owner's tasks may be claimed, and the claim itself is a compare-and-swap in the
store (``TaskStore.claim``), so two brokers judging the same orphan never both run it.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable

import anyio

from execloop.runtime.store import TaskRow, TaskStore
from execloop.sandboxes.reaper import is_orphan, owner_id

__all__ = ["BrokerOwner", "claim_if_gone", "follow", "owner_is_gone"]

# How often a task another broker runs is looked up in the store: from quick to at most 1 s.
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 1.0

log = logging.getLogger("execloop.runtime.ownership")

_held: set[str] = set()  # owner ids of the brokers running in this process
_held_lock = threading.Lock()


def owner_is_gone(
    owner: str | None, lease_until: float | None, *, now: float | None = None
) -> bool:
    """True when no live broker holds ``owner`` (see the module docstring)."""
    if not owner:
        return True
    process = owner.rpartition(":")[0]
    if process == owner_id():
        with _held_lock:
            return owner not in _held
    if is_orphan(process):
        return True
    if process.partition(":")[0] == socket.gethostname():
        return False  # a live process of this host
    return lease_until is None or lease_until < (time.time() if now is None else now)


class BrokerOwner:
    """One broker's identity in the store, held (alive) between ``hold`` and ``release``.

    While held, ``renew`` (which extends the leases of the broker's tasks) is called every
    third of ``lease_s`` from a daemon thread.
    """

    def __init__(self, *, lease_s: float) -> None:
        self.id = f"{owner_id()}:{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, renew: Callable[[], object]) -> None:
        with _held_lock:
            _held.add(self.id)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, args=(renew,), name=f"execloop lease {self.id}", daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with _held_lock:
            _held.discard(self.id)

    def _beat(self, renew: Callable[[], object]) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                renew()
            except Exception as exc:  # a busy or failing database: try again next beat
                log.warning("could not renew the leases of broker %s: %s", self.id, exc)


def claim_if_gone(store: TaskStore, owner: BrokerOwner, row: TaskRow) -> bool:
    """Claim the task if its owner is gone; True if ``owner`` holds it now."""
    return owner_is_gone(row.owner, row.lease_until) and store.claim(
        row.id,
        owner=owner.id,
        seen_owner=row.owner,
        seen_lease_until=row.lease_until,
        lease_s=owner.lease_s,
    )


async def follow(store: TaskStore, owner: BrokerOwner, task_id: str) -> bool:
    """Poll the store until another broker stores the task's result (False), or until the
    broker that runs it is gone and ``owner`` claimed it (True)."""
    delay = _POLL_FIRST_S
    while store.result(task_id) is None:
        row = store.task(task_id)
        if row is not None and claim_if_gone(store, owner, row):
            return True
        await anyio.sleep(delay)
        delay = min(2 * delay, _POLL_MAX_S)
    return False
