"""The process placement: a host process tree of its own (``start_new_session``), and what
every host-process placement shares: rlimits, the one kill of a whole tree, a bounded tail of
what the tree printed, and a cgroup of its own where the host allows one (``bubblewrap.py``).

``restricted`` runs here: its command is a plain host process with rlimits, no isolation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import anyio.to_thread
import psutil

from execloop.errors import ConfigError, SandboxStartError
from execloop.sandboxes import janitor
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.cgroups import Cgroup, read_head
from execloop.sandboxes.helper import _Bounded
from execloop.sandboxes.placements.base import Launch, Placement
from execloop.sandboxes.placements.process_tree import kill_tree
from execloop.sandboxes.placements.spawner import SPAWNER
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = [
    "NOFILE",
    "ProcessPlacement",
    "ProcessView",
    "cpu_seconds",
    "nproc_per_sandbox",
    "refuse",
    "rlimit_argv",
]

NOFILE = 4096
# RLIMIT_CPU counts a process's CPU time over its whole life, and the helper lives as long as
# the session: it is a backstop (for instance against background processes that spin), never
# the per-exec deadline, which the host enforces on the wall clock.
_CPU_EXECS = 100
_MIN_CPU_S = 3600
_REAP_TIMEOUT_S = 10.0

log = logging.getLogger("execloop.sandboxes.placements")


def cpu_seconds(spec: SandboxSpec) -> int:
    """The session's CPU-time backstop: 100 full-length execs, at least an hour."""
    return max(_MIN_CPU_S, math.ceil(_CPU_EXECS * spec.timeout_s))


def nproc_per_sandbox(release: str | None = None) -> bool:
    """Whether ``RLIMIT_NPROC`` counts only a bubblewrap sandbox's own processes: Linux >= 5.14
    counts it per user namespace (ucounts) and every sandbox has its own; older kernels count
    every process of the host uid (containers running as that uid included)."""
    found = re.match(r"(\d+)\.(\d+)", platform.release() if release is None else release)
    return found is not None and (int(found[1]), int(found[2])) >= (5, 14)


def rlimit_argv(
    spec: SandboxSpec, *, prlimit: str = "prlimit", in_cgroup: bool = False
) -> list[str]:
    """``prlimit`` options that apply the spec's limits to the command that follows.

    In a cgroup of its own, the tree's memory and processes are the cgroup's business: no
    per-process memory limit, no per-user process limit. Without one, memory is ``RLIMIT_DATA``
    (private writable memory), not ``RLIMIT_AS``: glibc reserves address space for a malloc
    arena per thread, so only 20 of 64 threads start under an address-space limit of 1 GiB,
    while all 64 and numpy's thread pool run under a data limit of 1 GiB (numpy called from 24
    threads at once does not: OpenBLAS reserves buffers per calling thread). Each value is
    capped at the caller's own hard limit: raising one would fail, and a lower limit than asked
    for is still honoured.
    """
    cgroup_instead: dict[str, tuple[int, int]] = {
        "data": (resource.RLIMIT_DATA, spec.memory),
        "nproc": (resource.RLIMIT_NPROC, spec.pids),
    }
    limits = {
        **({} if in_cgroup else cgroup_instead),
        "fsize": (resource.RLIMIT_FSIZE, spec.workspace_size),
        "nofile": (resource.RLIMIT_NOFILE, NOFILE),
        "cpu": (resource.RLIMIT_CPU, cpu_seconds(spec)),
        "core": (resource.RLIMIT_CORE, 0),
    }
    argv = [prlimit]
    for name, (kind, wanted) in limits.items():
        hard = resource.getrlimit(kind)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        argv.append(f"--{name}={value}")
    return [*argv, "--"]


def refuse(spec: SandboxSpec, *, backend: str, unsupported: dict[str, str]) -> None:
    """Raise ``ConfigError`` for the first spec field (name -> advice) set away from its default."""
    defaults = SandboxSpec()
    for field, advice in unsupported.items():
        if getattr(spec, field) != getattr(defaults, field):
            raise ConfigError(
                f"the {backend} backend cannot honour {field}={getattr(spec, field)!r}: {advice}"
            )


_LOG_KEEP = 64 * 1024


class _Started:
    """The started tree (leader of its own process group) and a bounded tail of what it
    printed: a pipe drained by a thread, so nothing it prints can fill a host disk."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,  # one process group: the host-side kill takes it whole
            )
        except OSError as exc:
            raise SandboxStartError(f"could not run {argv[0]}: {exc}") from exc
        self._log = _Bounded(_LOG_KEEP)
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        stream = self.popen.stdout
        assert stream is not None
        while chunk := os.read(stream.fileno(), 65536):
            with self._lock:
                self._log.add(chunk)
        stream.close()

    def logs(self) -> str:
        with self._lock:
            return self._log.text()


class ProcessPlacement(Placement):
    """A host process tree with rlimits; subclasses wrap the command (``_argv``)."""

    kind = "process"
    own_pid_namespace = False

    def __init__(self, spec: SandboxSpec, *, session_id: str) -> None:
        super().__init__(spec, session_id=session_id)
        self.state_dir: Path | None = None
        self._started: _Started | None = None
        self._watched: janitor.Resource | None = None
        self._last_usage: tuple[int | None, int | None] = (None, None)  # of a removed cgroup
        self._logs = ""

    @property
    def python(self) -> str:
        return sys.executable

    def guest_control_dir(self, control_dir: Path) -> str:
        return str(control_dir)

    def guest_workspace(self, workspace: Path | None) -> str:
        """A host directory: the given one, else one in the state directory."""
        if workspace is None:
            workspace = self.make_state_dir() / "workspace"
            workspace.mkdir(exist_ok=True)
        return str(workspace)

    def make_state_dir(self) -> Path:
        """A private host directory removed with the sandbox (made on first use)."""
        if self.state_dir is None:
            self.state_dir = make_temp_dir("state")
        return self.state_dir

    async def launch(self, what: Launch) -> None:
        await anyio.to_thread.run_sync(self.make_state_dir)
        await self._start([*rlimit_argv(self.spec), *what.command], env=what.env)

    async def _start(self, argv: Sequence[str], *, env: Mapping[str, str]) -> None:
        """Fork the sandbox on the spawner thread (``spawner.SPAWNER``). Shielded: a fork under way
        completes, and a cancelled start's ``remove`` then finds what it started."""
        with anyio.CancelScope(shield=True):
            await asyncio.wrap_future(SPAWNER.submit(lambda: self._fork(argv, env)))
        assert self._started is not None
        log.debug("%s sandbox %s is pid %d", self.kind, self.session_id, self._started.popen.pid)

    def _fork(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self._started = _Started(argv, env)
        self._watched = janitor.watch(janitor.process_tree(self._started.popen.pid))

    @property
    def pid(self) -> int | None:
        return None if self._started is None else self._started.popen.pid

    async def exit_status(self) -> int | None:
        return -signal.SIGKILL if self._started is None else self._started.popen.poll()

    async def signal(self, signum: int, *, process: psutil.Process | None = None) -> None:
        if self._started is None:
            return
        if signum == signal.SIGKILL:
            await self.kill()
        elif process is not None:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._started.popen.pid, signum)

    async def kill(self) -> None:
        if self._started is not None:
            await anyio.to_thread.run_sync(kill_tree, self._started.popen.pid)

    async def death_reason(self, *, oom_before: int | None = None) -> ExitReason:
        # A cgroup counts OOM kills. Without one none is recorded anywhere: a MemoryError in
        # the code is reported as `oom` by the sandbox itself; a command that vanished was killed.
        if self.cgroup is not None and _grew(self.cgroup.oom_kills(), oom_before):
            return ExitReason.OOM
        return ExitReason.KILLED

    async def memory(self, *, main: psutil.Process | None = None) -> tuple[int | None, int | None]:
        if self.cgroup is not None:
            return self.cgroup.peak_memory(), self.cgroup.oom_kills()
        if self._started is None:
            return self._last_usage
        return (None if main is None else _resident_peak(main.pid)), None

    async def logs(self) -> str:
        return self._logs if self._started is None else self._started.logs()

    def root_process(self) -> psutil.Process | None:
        if self._started is not None:
            with contextlib.suppress(psutil.Error):
                return psutil.Process(self._started.popen.pid)
        return None

    async def remove(self) -> None:
        started, self._started = self._started, None
        cgroup, self.cgroup = self.cgroup, None
        state_dir, self.state_dir = self.state_dir, None
        if started is not None:
            self._logs = started.logs()
        # one trip to a worker thread for the whole take-down, not one per step: a hundred
        # sandboxes closing at once queue behind each other's hops
        usage = await anyio.to_thread.run_sync(_take_down, started, cgroup, state_dir)
        if usage is not None:
            self._last_usage = usage
        if started is not None and started.popen.returncode is not None and self._watched:
            janitor.forget(self._watched)  # a process stuck in D state stays the janitor's
            self._watched = None


def _take_down(
    started: _Started | None, cgroup: Cgroup | None, state_dir: Path | None
) -> tuple[int | None, int | None] | None:
    """Kill the tree, reap it, remove its cgroup (after the tree is dead: nothing can move out
    or in any more) and its state directory; the cgroup's last memory reading. Blocking."""
    if started is not None:
        kill_tree(started.popen.pid)
        try:
            started.popen.wait(timeout=_REAP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # a process stuck in D state: move on
            log.warning("pid %d survived SIGKILL for %g s", started.popen.pid, _REAP_TIMEOUT_S)
    usage = None
    if cgroup is not None:
        usage = (cgroup.peak_memory(), cgroup.oom_kills())
        cgroup.remove()
    if state_dir is not None:
        remove_temp_dir(state_dir)
    return usage


class ProcessView:
    """The host view of a sandbox on a process placement, for inspection and tests."""

    placement: Placement

    @property
    def _tree_placement(self) -> ProcessPlacement:
        assert isinstance(self.placement, ProcessPlacement)
        return self.placement

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The tree's root process while it runs."""
        started = self._tree_placement._started
        return None if started is None else started.popen

    @property
    def state_dir(self) -> Path | None:
        return self._tree_placement.state_dir

    @property
    def cgroup(self) -> Cgroup | None:
        return self._tree_placement.cgroup


def _grew(now: int | None, before: int | None) -> bool:
    """Whether an OOM-kill counter went up (None: no reading)."""
    return now is not None and now > (before or 0)


def _resident_peak(pid: int) -> int | None:
    """The process's resident high-water mark (``VmHWM``); /proc answers at once. Read around
    every exec, so in one read (``read_text`` and a split of every line cost twice as much)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        _, found, rest = read_head(f"/proc/{pid}/status").partition("\nVmHWM:")
        if found:
            return int(rest.split(maxsplit=1)[0]) * 1024
    return None
