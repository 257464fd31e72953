"""Sandboxes that are a host process tree running the in-sandbox helper.

``ProcessSandbox`` starts a backend's command in its own session (one process group), with its
stdout/stderr in a log file for start errors, and owns the host side of its life: the kill of
the *whole* tree on a deadline or close, and the clean-up. A backend only says which command
runs (``_command``) and which spec fields it refuses.

A backend that sets ``uses_cgroup`` gets a cgroup of its own where the host allows one
(``cgroup_host``, ``cgroups``): memory, pids and CPU are then limited for the whole tree, and
the host reads its OOM kills and memory high-water mark (an exec during which the OOM killer
ended one of the sandbox's processes is ``oom``, even if the helper survived).

The other limits are rlimits set by util-linux's ``prlimit`` as a prefix of the command: anyio's
``open_process`` has no ``preexec_fn``, and a C binary that sets its own limits and ``exec``s
costs about a millisecond where a Python shim would cost a second interpreter start. rlimits
are per process (``RLIMIT_DATA``, ``RLIMIT_FSIZE``, ``RLIMIT_CPU``) or per user
(``RLIMIT_NPROC``), never per tree: without a cgroup, memory is bounded per process, and the
process budget is per user namespace since Linux 5.14 (each bubblewrap sandbox has its own, so
per sandbox) but shared by every process of the host uid before (``nproc_per_sandbox``).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import os
import platform
import re
import resource
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.to_thread
import psutil

from execloop.errors import ConfigError, SandboxStartError
from execloop.sandboxes import janitor
from execloop.sandboxes.base import ExecResult, ExitReason
from execloop.sandboxes.cgroup_host import sandbox_cgroup
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import HelperSandbox
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = [
    "NOFILE",
    "ProcessSandbox",
    "cpu_seconds",
    "kill_tree",
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
_KILL_ROUNDS = 50
_DEATH_WAIT_S = 2.0
_REAP_TIMEOUT_S = 10.0
_LOG_NAME = "process.log"

log = logging.getLogger("execloop.sandboxes.process")


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


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``, its process group and every descendant (blocking; run it in a thread).

    Everything is stopped before anything is killed, round after round until no new process
    shows up, so a fork bomb cannot refill the tree while it is being taken down. ``psutil``
    checks a process's identity before signalling it, so a recycled pid is never hit.
    """
    stopped: dict[int, psutil.Process] = {}
    for _ in range(_KILL_ROUNDS):
        fresh = [p for p in _tree(pid) if p.pid not in stopped]
        if not fresh:
            break
        for process in fresh:
            with contextlib.suppress(psutil.Error):
                process.suspend()
            stopped[process.pid] = process
    with contextlib.suppress(OSError):  # started with start_new_session: the group id is pid
        os.killpg(pid, signal.SIGKILL)
    for process in stopped.values():
        with contextlib.suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + _DEATH_WAIT_S  # SIGKILL is delivered, not yet acted upon
    while not all(_dead(p) for p in stopped.values()) and time.monotonic() < deadline:
        time.sleep(0.01)


def _dead(process: psutil.Process) -> bool:
    """Gone, or a zombie (its parent, killed too, leaves it to init)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


class ProcessSandbox(HelperSandbox):
    """Common machinery of the backends whose sandbox is a host process tree."""

    backend_name = "process"
    # the backend puts its tree in a cgroup of its own where the host allows one
    uses_cgroup: ClassVar[bool] = False

    def __init__(self, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self.process: anyio.abc.Process | None = None
        self.state_dir: Path | None = None
        self.cgroup: Cgroup | None = None  # set before ``_command`` runs, where there is one
        self._oom_before: int | None = None
        self._last_usage: tuple[int | None, int | None] = (None, None)  # of a removed cgroup
        self._watched: janitor.Resource | None = None

    # -- what a backend provides ----------------------------------------------------------
    @abc.abstractmethod
    async def _command(self, socket_dir: Path, state_dir: Path) -> list[str]:
        """The argv that runs the helper (limits included, see ``rlimit_argv``; entering
        ``self.cgroup`` first when there is one). It may put files in ``state_dir``, a private
        host directory removed with the sandbox."""

    def _environment(self) -> dict[str, str]:
        """The environment the command starts with (the host's is never passed on whole)."""
        return {}

    # -- HelperSandbox ----------------------------------------------------------------------
    async def _launch(self, socket_dir: Path) -> None:
        self.state_dir = make_temp_dir("state")
        if self.uses_cgroup:
            self.cgroup = sandbox_cgroup(self.spec, tag=self.session_id)
        argv = await self._command(socket_dir, self.state_dir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        output = os.open(self.state_dir / _LOG_NAME, flags, 0o600)
        try:
            self.process = await anyio.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=self._environment(),
                start_new_session=True,  # one process group, killed as a whole
            )
        except OSError as exc:
            raise SandboxStartError(f"could not run {argv[0]}: {exc}") from exc
        finally:
            os.close(output)  # the child has its own copy
        self._watched = janitor.watch(janitor.process_tree(self.process.pid))
        log.debug("%s sandbox %s is pid %d", self.backend_name, self.session_id, self.process.pid)

    async def _is_running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def _startup_logs(self) -> str:
        if self.state_dir is None:
            return ""
        try:
            return (self.state_dir / _LOG_NAME).read_bytes()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    async def _death_reason(self) -> ExitReason:
        # A cgroup counts OOM kills. Without one none is recorded anywhere: a MemoryError in the
        # user's code is reported as `oom` by the helper itself; a helper that vanished was killed.
        if self.cgroup is not None and _grew(self.cgroup.oom_kills(), self._oom_before):
            return ExitReason.OOM
        return ExitReason.KILLED

    async def _exec(self, fields: dict[str, Any], timeout: float | None) -> ExecResult:
        if self.cgroup is None:
            return await super()._exec(fields, timeout)
        self._oom_before = self.cgroup.oom_kills()
        result = await super()._exec(fields, timeout)
        # the sandbox may be gone (killed, timed out): then its cgroup's last reading counts
        peak, ooms = self._last_usage if self.cgroup is None else self._usage(self.cgroup)
        update: dict[str, Any] = {"peak_memory_bytes": peak}
        survived = result.exit_reason in (ExitReason.OK, ExitReason.ERROR)
        if survived and _grew(ooms, self._oom_before):  # a child was OOM-killed, not the helper
            note = f"execloop: the OOM killer ended a process (memory={self.spec.memory} bytes)"
            update |= {"exit_reason": ExitReason.OOM, "stderr": f"{result.stderr}\n{note}\n"}
        return result.model_copy(update=update)

    @staticmethod
    def _usage(cgroup: Cgroup) -> tuple[int | None, int | None]:
        return cgroup.peak_memory(), cgroup.oom_kills()

    async def _kill(self) -> None:
        if self.process is not None:
            await anyio.to_thread.run_sync(kill_tree, self.process.pid)

    async def _remove(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            await anyio.to_thread.run_sync(kill_tree, process.pid)
            with anyio.move_on_after(_REAP_TIMEOUT_S):
                await process.wait()
            if process.returncode is None:  # stuck in the kernel (D state): do not hang on it
                log.warning("pid %d survived SIGKILL for %g s", process.pid, _REAP_TIMEOUT_S)
            else:
                await process.aclose()
                if self._watched is not None:  # a stuck one stays the janitor's
                    janitor.forget(self._watched)
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is not None:  # after the tree is dead: nothing can move out or in any more
            self._last_usage = self._usage(cgroup)
            await anyio.to_thread.run_sync(cgroup.remove)
        state_dir, self.state_dir = self.state_dir, None
        if state_dir is not None:
            remove_temp_dir(state_dir)


def _grew(now: int | None, before: int | None) -> bool:
    """Whether an OOM-kill counter went up (None: no reading)."""
    return now is not None and now > (before or 0)
