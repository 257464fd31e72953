"""One sandbox's cgroup: a memory, process and CPU budget for its whole process tree.

rlimits cannot give that: memory rlimits are per process (and count memory reserved but never
touched), and ``RLIMIT_NPROC`` is per host uid on kernels before 5.14. A cgroup has memory =
``spec.memory`` (no swap beyond it), pids = ``spec.pids`` and a CPU quota of ``spec.cpus``, and
the host reads its OOM-kill counter and memory high-water mark (the sandbox has no ``/sys``).
Where it is made, and whether at all, is ``cgroup_host``'s business.

Getting in: ``Cgroup.enter_argv`` is a ``/bin/sh`` prefix that writes its own pid into the
cgroup's ``cgroup.procs`` files and then ``exec``s the rest of the command, so the whole tree is
inside before any of its code runs (as root, the outer bwrap and ``setpriv`` too).

Names: ``execloop-sandbox-<pid>.<ticks>-<host>-<tag>``: the owner's pid and start time as in
``tempdirs``, and a hash of the host name (a container's sandboxes can show up in the host's
hierarchy with pids of another namespace), so that an orphan is recognised (``is_orphan``) and
removed by ``execloop reap``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.tempdirs import process_start_ticks

__all__ = [
    "CONTROLLERS",
    "CPU_PERIOD_US",
    "Cgroup",
    "PREFIX",
    "cgroup_name",
    "is_orphan",
    "is_sandbox_name",
    "limit_files",
    "read_head",
    "remove_cgroup_dir",
]

PREFIX = "execloop-sandbox-"
CONTROLLERS = ("memory", "pids", "cpu")  # memory first: a Cgroup's dirs keep this order
CPU_PERIOD_US = 100_000
_MIN_QUOTA_US = 1_000  # the kernel refuses a smaller CFS quota
# $0 is a label; the arguments are cgroup.procs files up to "--", then the command
_ENTER = (
    'pid=$$; while [ "$1" != -- ]; do echo "$pid" > "$1" || exit 125; shift; done; shift; exec "$@"'
)
_NAME = re.compile(rf"{PREFIX}(?P<pid>\d+)\.(?P<ticks>\d+)-(?P<host>[0-9a-f]{{8}})-[a-z0-9]+")
_RMDIR_WAIT_S = 5.0

log = logging.getLogger("execloop.sandboxes.cgroups")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def cgroup_name(tag: str) -> str:
    """A fresh name that says which process owns the cgroup (``tag``: the session, cleaned)."""
    pid = os.getpid()
    clean = re.sub(r"[^a-z0-9]", "", tag.lower())[:16]
    owner = f"{pid}.{process_start_ticks(pid)}-{_host_tag()}"
    return f"{PREFIX}{owner}-{clean}{secrets.token_hex(3)}"


def limit_files(
    version: Literal[1, 2], *, memory: int, pids: int, cpus: float | None, swap: bool
) -> list[tuple[str, str, str]]:
    """``(controller, file, value)`` setting the limits, in an order the kernel accepts (v1's
    memory+swap limit may not be below the memory limit). ``swap``: the kernel accounts swap,
    which then stays at zero (Docker's ``--memory-swap`` = ``--memory``)."""
    quota = None if cpus is None else max(_MIN_QUOTA_US, round(cpus * CPU_PERIOD_US))
    files = [("memory", "memory.limit_in_bytes" if version == 1 else "memory.max", str(memory))]
    if swap and version == 1:
        files.append(("memory", "memory.memsw.limit_in_bytes", str(memory)))
    elif swap:
        files.append(("memory", "memory.swap.max", "0"))
    files.append(("pids", "pids.max", str(pids)))
    if quota is not None and version == 1:
        files += [
            ("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US)),
            ("cpu", "cpu.cfs_quota_us", str(quota)),
        ]
    elif quota is not None:
        files.append(("cpu", "cpu.max", f"{quota} {CPU_PERIOD_US}"))
    return files


def read_head(path: Path | str) -> str:
    """The start of a small cgroup or /proc file in one open and one read (they are read
    around every exec: ``Path.read_text`` costs twice as much)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _number(path: Path, key: str | None = None) -> int | None:
    """A cgroup file's first number, or the value on its line ``key``."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = read_head(path)
        if key is None:
            return int(text.split()[0])
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return None


@dataclass(frozen=True)
class Cgroup:
    """One sandbox's cgroup: controller -> directory (v1: one per hierarchy; v2: one)."""

    version: Literal[1, 2]
    dirs: Mapping[str, Path]

    @property
    def folders(self) -> list[Path]:
        return list(dict.fromkeys(self.dirs.values()))

    def set_limits(self, spec: SandboxSpec) -> None:
        memory = self.dirs["memory"]
        swap_file = "memory.memsw.limit_in_bytes" if self.version == 1 else "memory.swap.max"
        files = limit_files(
            self.version,
            memory=spec.memory,
            pids=spec.pids,
            cpus=spec.cpus if "cpu" in self.dirs else None,
            swap=(memory / swap_file).exists(),
        )
        for controller, name, value in files:
            (self.dirs[controller] / name).write_text(value)

    def enter_argv(self) -> list[str]:
        """A prefix that moves itself in, then ``exec``s the command that follows it."""
        procs = [str(folder / "cgroup.procs") for folder in self.folders]
        return ["/bin/sh", "-c", _ENTER, "execloop-cgroup", *procs, "--"]

    def peak_memory(self) -> int | None:
        """The high-water mark in bytes (the whole tree, page cache and tmpfs included)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        return _number(self.dirs["memory"] / name)

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer ended in this cgroup so far."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return _number(self.dirs["memory"] / name, key="oom_kill")

    def holds_more_than(self, count: int) -> bool:
        """Whether more than ``count`` processes are in it (True when unreadable)."""
        with contextlib.suppress(OSError, UnicodeDecodeError):
            return len(read_head(self.dirs["memory"] / "cgroup.procs").split()) > count
        return True

    def remove(self) -> bool:
        """Kill whatever is left in it, then remove it (blocking: run it in a thread)."""
        return all([remove_cgroup_dir(folder) for folder in self.folders])


def _procs(folder: Path) -> set[int]:
    try:
        return {int(pid) for pid in (folder / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()


def _kill_all(folder: Path) -> None:
    """SIGKILL every process in ``folder``. A pidfd pins each one, and only those still
    listed after they are pinned are signalled: a recycled pid is never hit."""
    if (folder / "cgroup.kill").exists():  # v2, Linux >= 5.14: the kernel kills them all
        with contextlib.suppress(OSError):
            (folder / "cgroup.kill").write_text("1")
    pinned: dict[int, int] = {}
    try:
        for pid in _procs(folder):
            with contextlib.suppress(OSError):
                pinned[pid] = os.pidfd_open(pid)
        still_inside = _procs(folder)
        for pid, pidfd in pinned.items():
            if pid in still_inside:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        for pidfd in pinned.values():
            os.close(pidfd)


def remove_cgroup_dir(folder: Path) -> bool:
    """Kill the processes in one cgroup directory and remove it; False if it stayed (logged)."""
    deadline = time.monotonic() + _RMDIR_WAIT_S
    while True:
        _kill_all(folder)
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:  # EBUSY while killed processes are still exiting
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("could not remove cgroup %s: %s", folder, exc)
                return False
        time.sleep(0.02)


def is_sandbox_name(name: str) -> bool:
    """Named like a sandbox cgroup, whoever owns it."""
    return _NAME.fullmatch(name) is not None


def is_orphan(name: str) -> bool:
    """A sandbox cgroup of this host whose owning process is gone."""
    match = _NAME.fullmatch(name)
    if match is None or match["host"] != _host_tag():
        return False  # not ours, or another host's (a container's) to judge
    return process_start_ticks(int(match["pid"])) != match["ticks"]
