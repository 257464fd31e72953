"""What this host offers for per-sandbox cgroups: v1, v2 or none, and where they go.

Where this process may create cgroups (root, or a delegated v2 subtree), each ``local`` sandbox
and each bubblewrap kernel gets its own (``cgroups.Cgroup``); otherwise rlimits stand in
(``placements.process.rlimit_argv``). ``execloop doctor`` reports the mode.

Where: on v1, under this process's own cgroup in the memory, pids and cpu hierarchies (a nested
cgroup also stays within its parent's limits). On v2, under the nearest cgroup, from our own
upwards, that we may write and whose ``cgroup.subtree_control`` already enables memory and pids:
a v2 cgroup holding processes cannot enable controllers for its children, so that is usually our
own cgroup's parent (systemd's ``user@UID.service`` subtree is delegated to its user). A v1
memory hierarchy wins: hybrid hosts also mount an empty cgroup2. Detection only reads; it never
enables a controller.

``EXECLOOP_CGROUPS=off`` forces the rlimit fallback; ``auto`` (the default) uses cgroups where
the host allows them. The orphans of a killed owner are found here too: they may be anywhere in
the hierarchies, under whichever cgroup their owner ran in.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from execloop.errors import ConfigError, SandboxStartError
from execloop.sandboxes.cgroups import (
    CONTROLLERS,
    Cgroup,
    cgroup_name,
    is_orphan,
    is_sandbox_name,
    remove_cgroup_dir,
)
from execloop.sandboxes.spec import SandboxSpec

__all__ = [
    "CgroupHost",
    "ENV",
    "Mount",
    "detect_cgroups",
    "locate",
    "locate_v2",
    "orphaned_cgroups",
    "parse_membership",
    "parse_mounts",
    "remove_orphaned_cgroups",
    "sandbox_cgroup",
]

ENV = "EXECLOOP_CGROUPS"
_REQUIRED = ("memory", "pids")
_FSTYPES: dict[str, Literal[1, 2]] = {"cgroup": 1, "cgroup2": 2}
_WALK_DEPTH = 8

Mode = Literal["v1", "v2", "none"]


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
            for controller in CONTROLLERS:
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
    """Where sandbox cgroups go, given the mounts and this process's own cgroups."""
    v1 = {name: mount for mount in mounts if mount.version == 1 for name in mount.options}
    if "memory" in v1:
        return _locate_v1(v1, own)
    unified = next((mount for mount in mounts if mount.version == 2), None)
    if unified is None:
        return CgroupHost("none", detail="no cgroup file system with a memory controller")
    return locate_v2(unified.point, _own_dir(unified, own.get("")))


def _locate_v1(v1: Mapping[str, Mount], own: Mapping[str, str]) -> CgroupHost:
    parents: dict[str, Path] = {}
    for controller in CONTROLLERS:
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
            parents = {name: folder for name in CONTROLLERS if name in enabled}
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


# -- orphans: anywhere in the hierarchies, under whichever cgroup their owner ran in ------
def _sandbox_dirs(top: Path, depth: int) -> Iterator[Path]:
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if is_sandbox_name(entry.name):
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
        if mount.version == 2 or mount.options.intersection(CONTROLLERS)
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
