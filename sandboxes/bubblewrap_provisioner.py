"""The kernel in a bubblewrap sandbox running the host's own Python.

The sandbox is the ``local`` backend's (``local_backend.bwrap_argv``: the interpreter relocated
read-only under ``/opt/execloop``, uid 1000 in a user namespace that cannot nest, no network, no
host process or environment, read-only root, a cgroup of its own where the host allows one and
rlimits, and as root a first bwrap that stages what only root may read before dropping to the
sandbox user), with the kernel in the helper's place (``kernel_argv``).

bwrap's init forwards no signal, so an interrupt goes to the kernel's host process itself; a
kill takes the whole process tree (``process_backend.kill_tree``). With a cgroup, its OOM-kill
counter tells an OOM kill from another death and its high-water mark is the peak memory; without
one an OOM kill cannot be told apart (a refused allocation is a ``MemoryError``, which the
sandbox reports as ``oom``) and the peak is the kernel process's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread
import psutil

from execloop.errors import SandboxStartError
from execloop.sandboxes import janitor
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.cgroup_host import sandbox_cgroup
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.helper import _Bounded
from execloop.sandboxes.kernel_provisioners import SandboxKernelProvisioner
from execloop.sandboxes.local_backend import (
    PythonLayout,
    Tools,
    bwrap_argv,
    find_tools,
    host_ids,
    host_python,
    prepare_state_dir,
    system_argv,
)
from execloop.sandboxes.process_backend import kill_tree
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["BubblewrapKernelProvisioner", "kernel_argv"]

_REAP_TIMEOUT_S = 10.0
_LOG_KEEP = 64 * 1024


def kernel_argv(
    spec: SandboxSpec,
    command: Sequence[str],
    *,
    session_id: str,
    control_dir: Path,
    state_dir: Path,
    python: PythonLayout,
    tools: Tools,
    system: Sequence[str],
    run_as: tuple[int, int] | None,
    cgroup: Cgroup | None,
) -> list[str]:
    """The local backend's command line (its cgroup, rlimits and all) with ``command`` in place
    of its helper."""
    argv = bwrap_argv(
        spec,
        session_id=session_id,
        socket_dir=control_dir,
        state_dir=state_dir,
        python=python,
        tools=tools,
        system=system,
        run_as=run_as,
        cgroup=cgroup,
    )
    start = len(argv) - 1 - argv[::-1].index(tools.prlimit)  # the rlimits, then the helper
    return [*argv[: argv.index("--", start) + 1], *command]


class _Process:
    """The started sandbox (leader of its own process group) and a bounded tail of what it
    printed outside the kernel's own capture."""

    def __init__(self, argv: list[str]) -> None:
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
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


class BubblewrapKernelProvisioner(SandboxKernelProvisioner):
    """Runs the kernel under bwrap with the local backend's isolation."""

    placement = "bubblewrap"
    _process: _Process | None = None
    _cgroup: Cgroup | None = None
    _watched: janitor.Resource | None = None

    @property
    def cgroup(self) -> Cgroup | None:
        """The running kernel's own cgroup; None without one (rlimits only)."""
        return self._cgroup

    def _python(self) -> str:
        return host_python().interpreter

    async def _launch(self, command: list[str]) -> None:
        assert self._host_dir is not None
        # the local backend binds spec.workspace_dir and passes spec.env: both are ours here
        spec = self.sandbox_spec.model_copy(
            update={"workspace_dir": self.workspace_dir, "env": self._env}
        )
        run_as = host_ids(spec)
        python = host_python()
        state_dir = self._host_dir / "state"
        if not state_dir.exists():
            state_dir.mkdir()
            prepare_state_dir(state_dir, python, staged=run_as is not None)
        tools = find_tools()
        self._cgroup = sandbox_cgroup(spec, tag=self.sandbox_id)  # each launch: a fresh one
        argv = kernel_argv(
            spec,
            command,
            session_id=self.sandbox_id,
            control_dir=self.control_dir,
            state_dir=state_dir,
            python=python,
            tools=tools,
            system=system_argv(),
            run_as=run_as,
            cgroup=self._cgroup,
        )
        try:
            self._process = _Process(argv)
        except SandboxStartError:
            await self._remove()
            raise
        self._watched = janitor.watch(janitor.process_tree(self._process.popen.pid))

    def _root_process(self) -> psutil.Process | None:
        if self._process is not None:
            with contextlib.suppress(psutil.Error):
                return psutil.Process(self._process.popen.pid)
        return None

    async def _may_have_strays(self) -> bool:
        # the sandbox's own /proc lists its PID namespace only: bwrap's init and the kernel
        kernel = self.kernel_process()
        if kernel is None:
            return False
        with contextlib.suppress(OSError):
            return sum(name.isdigit() for name in os.listdir(f"/proc/{kernel.pid}/root/proc")) > 2
        return True

    async def poll(self) -> int | None:
        return -signal.SIGKILL if self._process is None else self._process.popen.poll()

    async def send_signal(self, signum: int) -> None:
        if self._process is None:
            return
        kernel = self.kernel_process()
        if signum in (signal.SIGINT, signal.SIGTERM) and kernel is not None:
            with contextlib.suppress(psutil.Error):
                kernel.send_signal(signum)
        elif signum == signal.SIGKILL:
            await anyio.to_thread.run_sync(kill_tree, self._process.popen.pid)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.popen.pid, signum)

    async def _remove(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            await anyio.to_thread.run_sync(kill_tree, process.popen.pid)
            with anyio.move_on_after(_REAP_TIMEOUT_S):  # a process stuck in D state: move on
                await anyio.to_thread.run_sync(process.popen.wait, abandon_on_cancel=True)
            if process.popen.returncode is not None and self._watched is not None:
                janitor.forget(self._watched)  # a stuck one stays the janitor's
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            await anyio.to_thread.run_sync(cgroup.remove)

    async def death_reason(self) -> ExitReason:
        # a cgroup lives as long as one kernel: any OOM kill in it is this kernel's
        if self._cgroup is not None and (self._cgroup.oom_kills() or 0) > 0:
            return ExitReason.OOM
        return ExitReason.KILLED

    async def memory(self) -> tuple[int | None, int | None]:
        if self._cgroup is not None:
            return self._cgroup.peak_memory(), self._cgroup.oom_kills()
        kernel = self.kernel_process()
        return (None if kernel is None else _resident_peak(kernel.pid)), None

    async def logs(self) -> str:
        return "" if self._process is None else self._process.logs()


def _resident_peak(pid: int) -> int | None:
    """The process's resident high-water mark (``VmHWM``); /proc answers at once."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None
