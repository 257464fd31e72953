"""The ``jupyter`` backend: a stateful IPython kernel in a container or a bubblewrap sandbox.

The kernel is placed by ``spec.placement`` through execloop's kernel provisioners and driven by
``kernel_session.KernelSession``; this class is the ``Sandbox`` contract around it. A deadline or
an output flood interrupts the kernel: if it answers within a short grace the session keeps its
state, otherwise the kernel is killed and later calls raise ``SandboxClosedError`` until
``restart()`` starts a fresh one. The workspace is a host directory mounted at ``/workspace``,
so transfers are host-side file operations (``workspace.py``, which trusts nothing the sandbox
wrote), and rich outputs (PNG, JPEG, SVG, HTML) are saved under ``outputs/``, where
``artifacts()`` lists them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.to_thread
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from execloop.errors import SandboxClosedError, SandboxStartError, TransferError
from execloop.sandboxes import kernelspecs, transfer
from execloop.sandboxes.base import (
    DEFAULT_MANIFEST_LIMIT,
    Capability,
    ExecResult,
    ExitReason,
    Manifest,
    Sandbox,
    check_backend,
    check_exec_args,
)
from execloop.sandboxes.kernel_code import (
    OUTPUT_LIMIT_HOOK,
    REAP_ZOMBIES,
    RUN_FILE,
    SESSION_HOOKS,
)
from execloop.sandboxes.kernel_messages import OutputCollector
from execloop.sandboxes.kernel_provisioners import check_placement
from execloop.sandboxes.kernel_session import KernelSession, RunEnd
from execloop.sandboxes.placements.base import workspace_owner
from execloop.sandboxes.spec import SANDBOX_UID, SandboxSpec
from execloop.sandboxes.stateful import MAX_DOWNLOAD_BYTES
from execloop.sandboxes.streaming import OnOutput, OutputStream, check_on_output
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir
from execloop.sandboxes.workspace import Workspace

__all__ = ["JupyterSandbox", "OUTPUTS_DIR"]

OUTPUTS_DIR = "outputs"

log = logging.getLogger("execloop.sandboxes.jupyter")


class JupyterSandbox(Sandbox):
    """A stateful IPython kernel placed by ``spec.placement`` (``docker`` or ``bubblewrap``)."""

    backend_name = "jupyter"

    def __init__(self, spec: SandboxSpec | None = None) -> None:
        spec = spec or SandboxSpec(backend="jupyter")
        check_backend(spec, "jupyter", type(self).__name__)
        check_placement(spec)
        super().__init__(spec)
        self.workspace_dir: Path | None = None
        self._own_workspace = False
        self._files: Workspace | None = None
        self._kernel: KernelSession | None = None
        self._dead: str | None = None
        self._lock = anyio.Lock(fast_acquire=True)  # no loop pass when uncontended
        self.exec_count = 0
        self._outputs_saved = 0
        self._uncounted = False  # this kernel's placement cannot count OOM kills
        self._oom_after: int | None = None  # the OOM-kill count read at the end of the last call

    @property
    def ended(self) -> str | None:
        return self._dead

    @property
    def capabilities(self) -> frozenset[Capability]:
        offers = {
            Capability.STATEFUL,
            Capability.TOOLS,
            Capability.RESTART,
            Capability.RICH_OUTPUT,
            Capability.STREAMING,
            Capability.BINARY_STDOUT,  # kernel_code.SESSION_HOOKS gives the streams a .buffer
        }
        if self.spec.placement == "docker":
            offers.add(Capability.GPU)
        return frozenset(offers)

    @property
    def control_dir(self) -> Path | None:
        """The running kernel's control directory (a restart brings a new one)."""
        if self._kernel is None or self._closed:
            return None
        return self._kernel.provisioner.control_dir

    @property
    def control_owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0 or self.workspace_dir is None:
            return None
        return workspace_owner(self.workspace_dir)

    @property
    def kernel_manager(self) -> AsyncKernelManager | None:
        """The running kernel's manager (its ``session.key`` is the HMAC key), for inspection."""
        return None if self._kernel is None else self._kernel.manager

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._check_not_closed()
        if self._kernel is not None:
            return
        try:
            self._prepare_workspace()
            await self._start_kernel()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()  # a failed start leaves nothing behind
            raise

    def _prepare_workspace(self) -> None:
        if self.spec.workspace_dir is not None:
            self.workspace_dir = self.spec.workspace_dir
        else:
            self.workspace_dir = make_temp_dir("workspace", mode=0o755)
            self._own_workspace = True
            if os.geteuid() == 0:  # the kernel never runs as root: it gets the workspace
                os.chown(self.workspace_dir, SANDBOX_UID, SANDBOX_UID)
        self._files = Workspace(self.workspace_dir, owner=workspace_owner(self.workspace_dir))

    async def _start_kernel(self) -> None:
        placement = self.spec.placement
        config = {
            "session_id": self.session_id,
            "spec": self.spec.model_dump(mode="json", exclude_defaults=True),
            "workspace": str(self.workspace_dir),
        }
        fields = kernelspecs.kernelspec_dict(placement, config=config)
        kernel = KernelSpec(name=kernelspecs.KERNEL_NAMES[placement], resource_dir="", **fields)
        self._kernel = KernelSession(kernel)
        self._uncounted = False
        self._oom_after = None
        await self._kernel.start(timeout=self.spec.start_timeout_s)
        hooks = SESSION_HOOKS, OUTPUT_LIMIT_HOOK.format(limit=self.spec.output_limit_bytes)
        for code in hooks:  # a kernel without its checks and limits is never handed out
            if (failed := await self._kernel.run_silently(code)) is not None:
                raise SandboxStartError(f"execloop's set-up code failed in the kernel: {failed}")

    async def restart(self) -> None:
        """A fresh kernel (new state, new HMAC key, new ``control_dir``) on the same workspace,
        dead or alive; then the ``on_restart`` hooks (the tool bridge re-attaches)."""
        self._check_not_closed()
        async with self._lock:
            await self._stop_kernel()
            self._dead = None
            try:
                await self._start_kernel()
            except BaseException:
                self._dead = "restart() failed"
                await self._stop_kernel()
                raise
        await self._restarted()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self._stop_kernel()
            if self._own_workspace and self.workspace_dir is not None:
                await anyio.to_thread.run_sync(remove_temp_dir, self.workspace_dir)

    async def _stop_kernel(self) -> None:
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            with anyio.CancelScope(shield=True):
                await kernel.stop()

    def _check_not_closed(self) -> None:
        super()._ensure_open()

    def _ensure_open(self) -> None:
        self._check_not_closed()
        if self._dead is not None:
            raise SandboxClosedError(
                f"the kernel died earlier ({self._dead}); call restart() for a fresh kernel "
                "or start a new sandbox",
                sandbox_id=self.session_id,
                ended=self._dead,
            )
        if self._kernel is None:
            raise SandboxClosedError("the sandbox was never started; use `async with` or start()")

    # -- execution -------------------------------------------------------------------------
    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        limit = check_exec_args(timeout=timeout, code=code)
        return await self._execute(code, limit, check_on_output(on_output))

    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        timeout = check_exec_args(timeout=timeout, path=path, args=args)
        on_output = check_on_output(on_output)
        self._ensure_open()
        try:
            relative = await anyio.to_thread.run_sync(self._workspace().regular_file, path)
        except TransferError as exc:  # like running a missing script: the script's failure
            return ExecResult(
                exit_code=1, exit_reason=ExitReason.ERROR, stderr=f"execloop: {exc}\n", duration_s=0
            )
        target = f"{kernelspecs.SANDBOX_WORKSPACE}/{relative}"
        return await self._execute(
            RUN_FILE.format(path=target, args=list(args)), timeout, on_output
        )

    async def _execute(
        self, code: str, timeout: float | None, on_output: OnOutput | None
    ) -> ExecResult:
        self._ensure_open()
        async with self._lock:
            self._ensure_open()
            assert self._kernel is not None
            kernel = self._kernel
            self.exec_count += 1
            self._outputs_saved = 0
            collector = OutputCollector(
                keep=self.spec.max_output_bytes, limit=self.spec.output_limit_bytes
            )
            if on_output is not None:  # iopub stream messages arrive as the cell prints
                collector.live = OutputStream(on_output, limit=self.spec.max_output_bytes)
            limit = timeout if timeout is not None else self.spec.timeout_s
            started = time.monotonic()
            oom_before = await self._oom_kills_before(kernel)

            async def save(suffix: str, data: bytes) -> None:
                await self._save_output(suffix, data, collector)

            try:
                end = await kernel.run(code, collector, started + limit, save)
                if collector.live is not None:
                    collector.live.close()
            except BaseException:  # cancelled or broken: the kernel's state cannot be trusted
                self._dead = f"interrupted mid-call during call #{self.exec_count}"
                await self._stop_kernel()
                raise
            if end.died is not None:
                died = end.died
                if collector.exit_status is not None:
                    died = f"the script called os._exit({collector.exit_status})"
                self._dead = f"{died} during call #{self.exec_count}"
                log.info("jupyter sandbox %s: %s", self.session_id, self._dead)
                self._kernel = None  # the session stopped its kernel already
            return await self._result(collector, end, started, oom_before)

    async def _oom_kills_before(self, kernel: KernelSession) -> int | None:
        """The OOM-kill count a call starts from (None where the placement cannot count)."""
        if self._uncounted:  # where the last reading could not count, this one cannot either
            return None
        if self._oom_after is not None and not self.spec.keep_background_processes:
            # the last call's strays were killed before its count was read: since then only
            # the idle kernel ran, so that count stands (one cgroup read saved per call)
            return self._oom_after
        return (await kernel.provisioner.memory())[1]

    async def _result(
        self, collector: OutputCollector, end: RunEnd, started: float, oom_before: int | None
    ) -> ExecResult:
        duration = time.monotonic() - started
        peak = oom_after = None
        trouble: tuple[ExitReason, str] | None = None
        if self._kernel is not None:
            provisioner = self._kernel.provisioner
            if not self.spec.keep_background_processes and await provisioner.reap_strays():
                await self._kernel.run_silently(REAP_ZOMBIES)
            peak, oom_after = await provisioner.memory()
            self._uncounted, self._oom_after = oom_after is None, oom_after
            trouble = collector.trouble
        exit_code: int | None
        if end.died is not None and collector.exit_status is not None:  # the script's os._exit
            exit_code = collector.exit_status & 0xFF
            reason = ExitReason.OK if exit_code == 0 else ExitReason.ERROR
        elif end.reason is None:  # it finished: the cell's own outcome
            exit_code, reason, message = collector.outcome()
            collector.stderr.add(message.encode())
            if oom_before is not None and oom_after is not None and oom_after > oom_before:
                reason = ExitReason.OOM  # one of the cell's processes was OOM-killed
        else:
            reason, alive = end.reason, end.died is None
            exit_code = 1 if reason is ExitReason.OUTPUT_LIMIT and alive else None
            collector.stderr.add(self._note(reason, alive, duration).encode())
        if trouble is not None:  # the script left the kernel unable to go on: close it
            reason, why = trouble
            exit_code = exit_code or 1
            self._dead = f"{why} during call #{self.exec_count}"
            collector.stderr.add(f"\nexecloop: {why}; the kernel was stopped\n".encode())
            await self._stop_kernel()
        return ExecResult(
            exit_code=exit_code,
            exit_reason=reason,
            stdout=collector.stdout.text(),
            stderr=collector.stderr.text(),
            stdout_truncated=collector.stdout.truncated,
            stderr_truncated=collector.stderr.truncated,
            duration_s=duration,
            peak_memory_bytes=peak,
        )

    def _note(self, reason: ExitReason, alive: bool, duration: float) -> str:
        if not alive:
            return f"\nexecloop: {self._dead}; its state is gone (restart() for a fresh kernel)\n"
        what = "timed out" if reason is ExitReason.TIMEOUT else "printed more than the limit"
        kept = "the kernel was interrupted and kept its state"
        return f"\nexecloop: {what} after {duration:.2f} s; {kept}\n"

    async def _save_output(self, suffix: str, data: bytes, collector: OutputCollector) -> None:
        stem = f"exec-{self.exec_count:03d}-{self._outputs_saved}"
        self._outputs_saved += 1
        try:
            await anyio.to_thread.run_sync(
                self._workspace().write_new, OUTPUTS_DIR, stem, suffix, data
            )
        except TransferError as exc:  # the sandbox can sabotage its own outputs/: its problem
            collector.stderr.add(f"execloop: a display output was not saved: {exc}\n".encode())

    # -- files -----------------------------------------------------------------------------
    def _workspace(self) -> Workspace:
        """The workspace stays reachable after the kernel died, until close()."""
        self._check_not_closed()
        if self._files is None:
            raise SandboxClosedError("the sandbox was never started; use `async with` or start()")
        return self._files

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        transfer.check_name(dest, what="upload destination")
        await anyio.to_thread.run_sync(self._workspace().extract, archive, dest)

    async def _upload_path(self, source: Path, dest: str) -> None:
        await anyio.to_thread.run_sync(self._workspace().copy_in, source, dest)

    async def download_tar(self, path: str) -> bytes:
        files = self._workspace()
        transfer.check_name(path)
        return await anyio.to_thread.run_sync(lambda: files.tar(path, max_bytes=MAX_DOWNLOAD_BYTES))

    async def download(self, path: str, dest: Path) -> list[Path]:
        transfer.check_name(path)
        return await anyio.to_thread.run_sync(self._workspace().copy_out, path, dest)

    async def read_file(self, path: str) -> bytes:
        transfer.check_name(path)
        return await anyio.to_thread.run_sync(self._workspace().read, path)

    async def manifest(self, path: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        files = self._workspace()
        transfer.check_name(path)
        return await anyio.to_thread.run_sync(lambda: files.manifest(path, limit=limit))
