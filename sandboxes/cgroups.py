"""Per-sandbox cgroups: one memory, process and CPU budget per sandbox's process tree.

rlimits cannot give that: ``RLIMIT_NPROC`` counts every process of the uid on the whole host,
so concurrent sandboxes starve each other, and memory rlimits are per process. Where this
process may create cgroups (root, or a delegated v2 subtree), each ``local`` sandbox and each
bubblewrap kernel gets its own, with memory = ``spec.memory`` (and no swap beyond it), pids =
``spec.pids`` and a CPU quota of ``spec.cpus``; its OOM-kill counter and memory high-water mark
are read on the host (the sandbox has no ``/sys``).

Getting in: ``Cgroup.enter_argv`` is a ``/bin/sh`` prefix that writes its own pid into the
cgroup's ``cgroup.procs`` files and then ``exec``s the rest of the command, so the whole tree is
inside before any of its code runs (as root, the outer bwrap and ``setpriv`` too).

Where: on v1, under this process's own cgroup in the memory, pids and cpu hierarchies (a nested
cgroup also stays within its parent's limits). On v2, under the nearest cgroup, from our own
upwards, that we may write and whose ``cgroup.subtree_control`` already enables memory and pids:
a v2 cgroup holding processes cannot enable controllers for its children, so that is usually our
own cgroup's parent (systemd's ``user@UID.service`` subtree is delegated to its user). Detection
only reads; it never enables a controller.

Names: ``execloop-sandbox-<pid>.<ticks>-<host>-<tag>``: the owner's pid and start time as in
``tempdirs``, and a hash of the host name (a container's sandboxes can show up in the host's
hierarchy with pids of another namespace). ``remove_orphaned_cgroups`` (``execloop reap``)
removes those whose owner is gone.

``EXECLOOP_CGROUPS=off`` forces the rlimit fallback; ``auto`` (the default) uses cgroups where
the host allows them. ``execloop doctor`` says which mode is in force.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from execloop.errors import ConfigError, SandboxStartError
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.tempdirs import process_start_ticks

__all__ = [
    "CPU_PERIOD_US",
    "Cgroup",
    "CgroupHost",
    "ENV",
    "Mount",
    "PREFIX",
    "cgroup_name",
    "detect_cgroups",
    "is_orphan",
    "limit_files",
    "locate",
    "locate_v2",
    "orphaned_cgroups",
    "parse_membership",
    "parse_mounts",
    "remove_cgroup_dir",
    "remove_orphaned_cgroups",
    "sandbox_cgroup",
]

ENV = "EXECLOOP_CGROUPS"
PREFIX = "execloop-sandbox-"
CPU_PERIOD_US = 100_000
_MIN_QUOTA_US = 1_000  # the kernel refuses a smaller CFS quota
_REQUIRED = ("memory", "pids")
_CONTROLLERS = (*_REQUIRED, "cpu")  # memory first: a v1 Cgroup's dirs keep this order
# $0 is a label; the arguments are cgroup.procs files up to "--", then the command
_ENTER = (
    'pid=$$; while [ "$1" != -- ]; do echo "$pid" > "$1" || exit 125; shift; done; shift; exec "$@"'
)
_NAME = re.compile(rf"{PREFIX}(?P<pid>\d+)\.(?P<ticks>\d+)-(?P<host>[0-9a-f]{{8}})-[a-z0-9]+")
_WALK_DEPTH = 8
_KILL_ROUNDS = 100
_RMDIR_WAIT_S = 5.0

Mode = Literal["v1", "v2", "none"]

log = logging.getLogger("execloop.sandboxes.cgroups")


# -- what the host offers ------------------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    """One cgroup file system from ``/proc/self/mountinfo``."""

    point: Path
    root: str  # the cgroup mounted there ("/" unless a bind mount of a sub-tree)
    version: Literal[1, 2]
    options: frozenset[str] = frozenset()  # v1: the controllers, among other super options


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), text)


def parse_mounts(mountinfo: str) -> list[Mount]:
    """The cgroup and cgroup2 mounts in the text of ``/proc/<pid>/mountinfo``."""
    mounts = []
    for line in mountinfo.splitlines():
        head, separator, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not separator or len(fields) < 5 or len(rest) < 3 or rest[0] not in _FSTYPES:
            continue
        point, root = Path(_unescape(fields[4])), _unescape(fields[3])
        mounts.append(Mount(point, root, _FSTYPES[rest[0]], frozenset(rest[2].split(","))))
    return mounts


_FSTYPES: dict[str, Literal[1, 2]] = {"cgroup": 1, "cgroup2": 2}


def parse_membership(proc_cgroup: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> cgroup path; ``""`` is the v2 entry."""
    own: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                own[name] = parts[2]
    return own


def _own_dir(mount: Mount, path: str | None) -> Path | None:
    """Where the cgroup ``path`` (as /proc/self/cgroup names it) is in this mount, if there."""
    root = mount.root.rstrip("/")
    if path is None or ".." in path.split("/"):  # outside our cgroup namespace's view
        return None
    if path != root and not path.startswith(f"{root}/"):
        return None
    return mount.point / path[len(root) :].lstrip("/")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


@dataclass(frozen=True)
class CgroupHost:
    """Where this process makes sandbox cgroups (controller -> parent directory), or why not."""

    mode: Mode
    parents: Mapping[str, Path] = field(default_factory=dict)
    detail: str = ""

    @property
    def cpu(self) -> bool:
        return "cpu" in self.parents

    def refusals(self, *, instead: str) -> dict[str, str]:
        """The spec fields (name -> advice) a process sandbox cannot honour on this host."""
        if self.cpu:
            return {}
        why = "no cgroup" if self.mode == "none" else "no cpu controller in its cgroup"
        return {
            "cpus": f"this host gives the sandbox {why}, so there is no CPU rate limit (only a "
            f"CPU-time backstop; `execloop doctor` says why); {instead}"
        }

    def create(self, spec: SandboxSpec, *, tag: str) -> Cgroup:
        """A new cgroup with the spec's limits (``SandboxStartError`` if the kernel says no)."""
        if self.mode == "none":
            raise SandboxStartError(f"no cgroup can be made here: {self.detail}")
        name = cgroup_name(tag)
        dirs: dict[str, Path] = {}
        try:
            for controller in _CONTROLLERS:
                if controller in self.parents:
                    folder = self.parents[controller] / name
                    if folder not in dirs.values():  # v2: one directory for every controller
                        folder.mkdir()
                    dirs[controller] = folder
            group = Cgroup(version=1 if self.mode == "v1" else 2, dirs=dirs)
            group.set_limits(spec)
        except OSError as exc:
            for folder in dict.fromkeys(reversed(dirs.values())):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise SandboxStartError(
                f"could not set up the sandbox's cgroup {name}: {exc}; "
                f"set {ENV}=off to use rlimits instead"
            ) from exc
        return group


def locate(mounts: Sequence[Mount], own: Mapping[str, str]) -> CgroupHost:
    """Where sandbox cgroups go, given the mounts and this process's own cgroups. A v1 memory
    hierarchy wins (hybrid hosts also mount an empty cgroup2, as this one does)."""
    v1 = {name: mount for mount in mounts if mount.version == 1 for name in mount.options}
    if "memory" in v1:
        return _locate_v1(v1, own)
    unified = next((mount for mount in mounts if mount.version == 2), None)
    if unified is None:
        return CgroupHost("none", detail="no cgroup file system with a memory controller")
    return locate_v2(unified.point, _own_dir(unified, own.get("")))


def _locate_v1(v1: Mapping[str, Mount], own: Mapping[str, str]) -> CgroupHost:
    parents: dict[str, Path] = {}
    for controller in _CONTROLLERS:
        mount = v1.get(controller)
        folder = None if mount is None else _own_dir(mount, own.get(controller))
        if folder is not None and _writable(folder):
            parents[controller] = folder
        elif controller != "cpu":  # without a cpu cgroup only `cpus` is refused
            where = f"{controller} hierarchy" if folder is None else str(folder)
            why = "not mounted" if mount is None else "not writable by this user"
            return CgroupHost("none", detail=f"cgroup v1: the {where} is {why}")
    where = ", ".join(f"{name} under {folder}" for name, folder in parents.items())
    return CgroupHost("v1", parents, detail=f"cgroup v1: {where}")


def locate_v2(top: Path, own: Path | None) -> CgroupHost:
    """The v2 parent: from ``own`` up to ``top``, the first cgroup we may write whose children
    get memory and pids (pure but for reading files under ``top``)."""
    available = _words(top / "cgroup.controllers")
    missing = [name for name in _REQUIRED if name not in available]
    if missing:
        return CgroupHost("none", detail=f"cgroup v2 at {top} has no {' or '.join(missing)}")
    if own is None:
        return CgroupHost("none", detail=f"cgroup v2: this process's cgroup is not under {top}")
    folder = own
    while True:
        enabled = _words(folder / "cgroup.subtree_control")
        if (
            all(name in enabled for name in _REQUIRED)
            and _writable(folder)
            and os.access(folder / "cgroup.procs", os.W_OK)  # to move a process under it
        ):
            parents = {name: folder for name in _CONTROLLERS if name in enabled}
            return CgroupHost("v2", parents, detail=f"cgroup v2: under {folder}")
        if folder == top or top not in folder.parents:
            break
        folder = folder.parent
    return CgroupHost(
        "none",
        detail=f"cgroup v2: no cgroup from {own} up to {top} is writable by this user with "
        "memory and pids enabled for its children",
    )


def detect_cgroups() -> CgroupHost:
    """This host's mode for this process (``EXECLOOP_CGROUPS`` first; only reads)."""
    setting = os.environ.get(ENV, "").strip().lower() or "auto"
    if setting == "off":
        return CgroupHost("none", detail=f"turned off by {ENV}=off")
    if setting != "auto":
        raise ConfigError(f"{ENV}={setting!r} is not understood: use 'auto' (default) or 'off'")
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        membership = Path("/proc/self/cgroup").read_text()
    except OSError as exc:
        return CgroupHost("none", detail=f"cannot read /proc: {exc}")
    return locate(parse_mounts(mountinfo), parse_membership(membership))


def sandbox_cgroup(spec: SandboxSpec, *, tag: str) -> Cgroup | None:
    """A new cgroup for one sandbox, or None where the host allows none (rlimits then)."""
    host = detect_cgroups()
    return None if host.mode == "none" else host.create(spec, tag=tag)


# -- one sandbox's cgroup ----------------------------------------------------------------------
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


def _number(path: Path, key: str | None = None) -> int | None:
    """A cgroup file's first number, or the value on its line ``key``."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        text = path.read_text()
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
    for _ in range(_KILL_ROUNDS):
        if _procs(folder):
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
    log.warning("could not empty cgroup %s", folder)
    return False


# -- orphans -----------------------------------------------------------------------------------
def is_orphan(name: str) -> bool:
    """A sandbox cgroup of this host whose owning process is gone."""
    match = _NAME.fullmatch(name)
    if match is None or match["host"] != _host_tag():
        return False  # not ours, or another host's (a container's) to judge
    return process_start_ticks(int(match["pid"])) != match["ticks"]


def _sandbox_dirs(top: Path, depth: int) -> Iterator[Path]:
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if _NAME.fullmatch(entry.name):
            yield Path(entry.path)
        elif depth > 0:
            yield from _sandbox_dirs(Path(entry.path), depth - 1)


def orphaned_cgroups(mounts: Sequence[Mount] | None = None) -> list[Path]:
    """The sandbox cgroup directories, in every hierarchy execloop uses, whose owner is gone."""
    if mounts is None:
        try:
            mounts = parse_mounts(Path("/proc/self/mountinfo").read_text())
        except OSError:
            return []
    tops = {
        mount.point
        for mount in mounts
        if mount.version == 2 or mount.options.intersection(_CONTROLLERS)
    }
    return [
        folder
        for top in sorted(tops)
        for folder in _sandbox_dirs(top, _WALK_DEPTH)
        if is_orphan(folder.name)
    ]


def remove_orphaned_cgroups() -> list[Path]:
    """Remove the orphaned sandbox cgroups (their processes killed first); the removed ones."""
    return [folder for folder in orphaned_cgroups() if remove_cgroup_dir(folder)]
