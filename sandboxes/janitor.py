"""One watchdog per owner process: what its sandboxes still hold when it dies is removed at once.

Containers are children of the Docker daemon, a bubblewrap tree started as root outlives its
parent (a change of uid clears the parent-death signal), and host directories outlive
everything. ``close()`` removes them, but a process killed with SIGKILL (or SIGTERM, or a
Jupyter client that only asks its kernel to shut down) never gets there.

So the first resource an owner registers spawns a *janitor*: a tiny Python process in its own
session (a terminal's Ctrl-C or a CI's kill of the owner's process group does not reach it)
whose stdin is one end of a socket pair. The other end lives only in the owner (close-on-exec,
and closed in a forked child), so the janitor reads EOF exactly when the owner is gone, however
it died. The owner sends one message per ``watch``/``forget`` (``SOCK_SEQPACKET``: never torn;
``MSG_NOSIGNAL``: a dead janitor never raises SIGPIPE in the owner; non-blocking: a stopped
janitor never blocks it). On EOF the janitor kills the process trees still registered, removes
the containers, then the files and directories, and exits. One janitor per owner process, never
one per sandbox; if it was killed, the next message starts a new one and replays what is held.
When even that fails, ``execloop reap`` is the backstop (labels and temp dir names name their
owner).

The janitor runs this file as a script: only the standard library is imported at its start,
``psutil`` and the docker SDK only when there is something to clean. The owner pays one
``posix_spawn`` (a few ms, ``bench/janitor.py``) and never waits for the janitor to start:
messages queue in the socket until it reads them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Resource",
    "containers",
    "forget",
    "janitor_pid",
    "main",
    "path",
    "process_start_ticks",
    "process_tree",
    "watch",
]

Kind = Literal["path", "tree", "containers"]
_KILL_ROUNDS = 50
_REST_S = 0.05

log = logging.getLogger("execloop.sandboxes.janitor")


def process_start_ticks(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from /proc), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class Resource:
    """Something the janitor removes if the owner dies holding it (build with the functions
    below: ``path``, ``process_tree``, ``containers``)."""

    kind: Kind
    key: str


def path(target: Path | str) -> Resource:
    """A host file or directory (removed without following links)."""
    return Resource("path", os.path.abspath(target))


def process_tree(pid: int) -> Resource:
    """A process started as the leader of its own process group (``start_new_session``): it,
    its descendants and whatever is left of its group. The start time guards against a
    recycled pid."""
    return Resource("tree", f"{pid}.{process_start_ticks(pid)}")


def containers(labels: Mapping[str, str]) -> Resource:
    """The Docker containers carrying all of ``labels``."""
    return Resource("containers", json.dumps(sorted(f"{k}={v}" for k, v in labels.items())))


# -- the owner's side ------------------------------------------------------------------------
class _Link:
    """The owner's end of the link, and what it has registered (replayed to a new janitor)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner = os.getpid()
        self.end: socket.socket | None = None
        self.janitor: int | None = None
        self.held: dict[Resource, None] = {}  # ordered: replayed as registered
        self.unavailable = False  # it could not be started: said once, not retried

    def watch(self, resource: Resource) -> None:
        with self.lock:
            self._adopt()
            self.held[resource] = None
            if self.unavailable:
                return
            if self.end is None or not self._send("+", resource):
                self._spawn()  # the first one, or the last one died: it learns everything

    def forget(self, resource: Resource) -> None:
        with self.lock:
            self._adopt()
            if resource not in self.held:
                return
            del self.held[resource]
            if self.end is not None and not self._send("-", resource) and self.held:
                self._spawn()  # it was killed: what is still held needs a new one

    def _adopt(self) -> None:
        """After a fork that skipped ``os.register_at_fork`` (a C extension's): start afresh."""
        if self.owner != os.getpid():
            self.after_fork()

    def after_fork(self) -> None:
        """In a forked child, which owns none of its parent's resources and must not keep the
        parent's janitor from reading EOF. A fresh lock too: the parent's may have been held."""
        if self.end is not None:
            self.end.close()
        self.lock = threading.Lock()
        self.owner = os.getpid()
        self.end, self.janitor, self.held, self.unavailable = None, None, {}, False

    def _send(self, op: str, resource: Resource) -> bool:
        """One message; False when the janitor is gone. Never blocks, never raises SIGPIPE."""
        assert self.end is not None
        message = (json.dumps([op, resource.kind, resource.key]) + "\n").encode()
        try:
            self.end.send(message, socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
        except BlockingIOError:  # it stopped reading (SIGSTOP?): never block the owner on it
            log.warning("the janitor (pid %s) is not reading: %s", self.janitor, message[:200])
        except OSError:
            self._drop_janitor()
            return False
        return True

    def _drop_janitor(self) -> None:
        if self.end is not None:
            self.end.close()
        if self.janitor is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.janitor, os.WNOHANG)  # collect it if it died
        self.end = self.janitor = None

    def _spawn(self) -> None:
        self._drop_janitor()
        # SEQPACKET: one message per send (no torn lines), EOF when the owner's end closes
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        actions = [
            (os.POSIX_SPAWN_DUP2, theirs.fileno(), 0),  # dup2 clears O_CLOEXEC: its stdin
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),  # never holds the owner's
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),  # output pipes open
        ]
        try:
            if theirs.fileno() == 0:  # stdin was closed and the socket took its number
                theirs.set_inheritable(True)
                actions = actions[1:]
            self.janitor = os.posix_spawn(
                sys.executable, [sys.executable, __file__], os.environ, file_actions=actions,
                setsid=True,
            )  # fmt: skip
        except OSError as exc:
            ours.close()
            self.unavailable = True
            log.warning("no janitor (%s): a killed owner leaves its sandboxes to `reap`", exc)
            return
        finally:
            theirs.close()
        self.end = ours
        log.debug("janitor pid %d watches pid %d", self.janitor, self.owner)
        for resource in list(self.held):
            if not self._send("+", resource):
                return


_link = _Link()
os.register_at_fork(after_in_child=_link.after_fork)


def watch(resource: Resource) -> Resource:
    """Register ``resource``: removed by the janitor if this process dies before ``forget``."""
    _link.watch(resource)
    return resource


def forget(resource: Resource) -> None:
    """``resource`` was released normally (idempotent)."""
    _link.forget(resource)


def janitor_pid() -> int | None:
    """The pid of this process's janitor, None before the first ``watch``."""
    return _link.janitor if _link.owner == os.getpid() else None


# -- the janitor's side ----------------------------------------------------------------------
def _read_until_eof(fd: int) -> dict[tuple[str, str], None]:
    """What is still held when the owner's end closes (or breaks: the same for us).

    Whenever the queue is empty it rests ``_REST_S`` before it waits again: a reader blocked in
    ``read`` is woken by every message, and the woken janitor preempted the owner in the middle
    of its send (a hundred sandboxes starting at once spent a second of the owner's event loop
    so). Resting, it is not waiting: what the owner sends meanwhile queues without waking
    anybody and is read in one go. The owner's death is seen at most ``_REST_S`` later."""
    held: dict[tuple[str, str], None] = {}
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                op, kind, key = json.loads(line)
                if op == "+":
                    held[(kind, key)] = None
                else:
                    held.pop((kind, key), None)
        if not select.select([fd], [], [], 0)[0]:
            time.sleep(_REST_S)
    return held


def _group_and_descendants(psutil: Any, groups: Mapping[int, int]) -> dict[int, Any]:
    """Processes of each process group ``pid`` started no earlier than its leader (``ticks``),
    and all their descendants, though the leader may be gone and they reparented."""
    found: dict[int, Any] = {}
    for process in psutil.process_iter():
        try:
            leader = os.getpgid(process.pid)
        except OSError:
            continue
        started = process_start_ticks(process.pid)
        if leader in groups and started is not None and int(started) >= groups[leader]:
            found[process.pid] = process
            with contextlib.suppress(psutil.Error):
                found.update((child.pid, child) for child in process.children(recursive=True))
    return found


def _kill_trees(keys: Iterable[str]) -> None:
    groups = {}
    for key in keys:
        pid, _, ticks = key.partition(".")
        if pid.isdigit() and ticks.isdigit():
            groups[int(pid)] = int(ticks)
    if not groups:
        return
    import psutil

    # everything stopped before anything is killed, so a fork bomb cannot refill the tree
    stopped: dict[int, Any] = {}
    for _ in range(_KILL_ROUNDS):
        fresh = {
            pid: p
            for pid, p in _group_and_descendants(psutil, groups).items()
            if pid not in stopped
        }
        if not fresh:
            break
        for process in fresh.values():
            with contextlib.suppress(psutil.Error):
                process.suspend()
        stopped.update(fresh)
    for process in stopped.values():
        with contextlib.suppress(psutil.Error):
            process.kill()


def _remove_containers(keys: Iterable[str]) -> None:
    filters = [json.loads(key) for key in keys]
    if not filters:
        return
    import docker

    client = docker.from_env()
    found = []
    for labels in filters:
        found += client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)
    removals = [threading.Thread(target=_remove_one, args=(c,)) for c in found]
    for removal in removals:
        removal.start()
    for removal in removals:
        removal.join()


def _remove_one(container: Any) -> None:
    with contextlib.suppress(Exception):  # gone already, or being removed
        container.remove(force=True)


def _remove_path(target: str) -> None:
    import shutil

    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(target)


def main() -> None:
    """The janitor: read registrations from stdin until EOF, then remove what is left."""
    os.chdir("/")  # holds no mount busy
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_IGN)
    held = _read_until_eof(0)
    by_kind: dict[str, list[str]] = {"tree": [], "containers": [], "path": []}
    for kind, key in held:
        by_kind.setdefault(kind, []).append(key)
    # processes first (they hold files open), then containers, then what they were given
    for step, keys in (
        (_kill_trees, by_kind["tree"]),
        (_remove_containers, by_kind["containers"]),
    ):
        with contextlib.suppress(Exception):  # best effort: `execloop reap` is the backstop
            step(keys)
    for target in by_kind["path"]:
        _remove_path(target)


if __name__ == "__main__":
    del sys.path[0]  # this folder: none of its modules may shadow an import
    main()
