"""The one kill of a whole host process tree (every process placement, the kernel
provisioner's strays): stop everything, round after round, then kill it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import psutil

__all__ = ["kill_tree"]

_KILL_ROUNDS = 50
_DEATH_WAIT_S = 2.0


def _children_files() -> bool:
    """Whether this kernel lists each thread's children (``CONFIG_PROC_CHILDREN``)."""
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


_LISTS_CHILDREN = _children_files()


def _child_pids(pid: int) -> list[int]:
    """The children of every thread of ``pid``, as /proc lists them (empty once it is gone)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/{pid}/task/{tid}/children") as listing,
            ):
                found += [int(child) for child in listing.read().split()]
    return found


def _tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants. Read from the tree's own /proc entries where the kernel
    lists children: psutil's ``children()`` reads every process of the host, so closing one of
    a hundred live sandboxes cost as much as all of them (the lists are exact only for stopped
    processes: ``kill_tree`` stops what it finds, then looks again)."""
    try:
        root = psutil.Process(pid)
        if not _LISTS_CHILDREN:
            return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    tree, parents = [root], [root]
    while parents:
        parent = parents.pop()
        for child_pid in _child_pids(parent.pid):
            with contextlib.suppress(psutil.Error):
                child = psutil.Process(child_pid)
                # as psutil does: a pid recycled since it was listed started after its parent
                if child.create_time() >= parent.create_time():
                    tree.append(child)
                    parents.append(child)
    return tree


def kill_tree(pid: int, *, keep: frozenset[int] = frozenset()) -> int:
    """SIGKILL ``pid``, its process group and every descendant but those in ``keep`` (then
    the group is spared); how many were killed. Blocking: run it in a thread.

    Everything is stopped before anything is killed, round after round until no new process
    shows up, so a fork bomb cannot refill the tree while it is being taken down. ``psutil``
    checks a process's identity before signalling it, so a recycled pid is never hit.
    """
    stopped: dict[int, psutil.Process] = {}
    for _ in range(_KILL_ROUNDS):
        fresh = [p for p in _tree(pid) if p.pid not in stopped and p.pid not in keep]
        if not fresh:
            break
        for process in fresh:
            with contextlib.suppress(psutil.Error):
                process.suspend()
            stopped[process.pid] = process
    if not keep:
        with contextlib.suppress(OSError):  # started with start_new_session: the group is pid
            os.killpg(pid, signal.SIGKILL)
    for process in stopped.values():
        with contextlib.suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + _DEATH_WAIT_S  # SIGKILL is delivered, not yet acted upon
    while not all(_dead(p) for p in stopped.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(stopped)


def _dead(process: psutil.Process) -> bool:
    """Gone, or a zombie (its parent, killed too, leaves it to init)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True
