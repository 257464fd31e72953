"""One sandboxed kernel seen from the host: start it, run a cell under a deadline, stop it.

jupyter_client does the talking (an ``AsyncKernelManager`` whose kernelspec names one of
execloop's provisioners, and its ``AsyncKernelClient``). Every channel read has an explicit
timeout (``get_msgs()`` can block): while iopub is silent the kernel's liveness is checked, so a
dead kernel is noticed within a second. jupyter_client's and zmq's errors are mapped here only.

A deadline or an output flood first interrupts the kernel; if it reports idle within a short
grace the kernel lives on with its state, otherwise it is killed.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from execloop.errors import (
    BackendUnavailableError,
    ExecloopError,
    SandboxClosedError,
    SandboxStartError,
)
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.kernel_messages import OutputCollector
from execloop.sandboxes.kernel_provisioners import SandboxKernelProvisioner

__all__ = ["INTERRUPT_GRACE_S", "KernelSession", "RunEnd"]

INTERRUPT_GRACE_S = 2.0  # how long an interrupted kernel may take to report idle
_SILENCE_S = 0.5  # iopub silence after which the kernel's liveness is checked
_REPLY_S = 1.0

log = logging.getLogger("execloop.sandboxes.jupyter")

SaveOutput = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class RunEnd:
    """How a cell ended: ``reason`` None when it finished by itself; ``died`` says why the
    kernel is gone (it was killed, or died), None while it lives."""

    reason: ExitReason | None
    died: str | None = None


class _OneKernelSpec(KernelSpecManager):
    """Gives the manager one kernelspec built in memory; nothing needs to be installed."""

    def __init__(self, spec: KernelSpec) -> None:
        super().__init__()
        self._spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return self._spec


class KernelSession:
    """A started kernel and its client. ``stop()`` is idempotent and always releases the
    container or process and the host directories."""

    def __init__(self, kernel: KernelSpec) -> None:
        self.manager = AsyncKernelManager(
            kernel_name=kernel.name, kernel_spec_manager=_OneKernelSpec(kernel)
        )
        self._client: AsyncKernelClient | None = None

    @property
    def provisioner(self) -> SandboxKernelProvisioner:
        provisioner = self.manager.provisioner
        if not isinstance(provisioner, SandboxKernelProvisioner):
            raise SandboxClosedError("the kernel is not running")
        return provisioner

    @property
    def client(self) -> AsyncKernelClient:
        if self._client is None:
            raise SandboxClosedError("the kernel is not running")
        return self._client

    async def logs(self) -> str:
        try:
            return (await self.provisioner.logs())[-2000:]
        except SandboxClosedError:
            return ""

    # -- start and stop --------------------------------------------------------------------
    async def start(self, *, timeout: float) -> None:
        name = self.manager.kernel_name
        try:
            with anyio.fail_after(timeout):
                await self.manager.start_kernel()
                self._client = self.manager.client()
                # no heartbeat thread: liveness is the provisioner's poll (``_drain``), and a
                # thread pinging in the background takes this process's GIL from the calls
                self._client.start_channels(hb=False)
                await self._wait_ready(self._client)
        except TimeoutError as exc:
            raise SandboxStartError(
                f"kernel {name} did not answer within {timeout:g} s; logs:\n{await self.logs()}"
            ) from exc
        except ModuleNotFoundError as exc:  # the factory's word for an unregistered provisioner
            raise BackendUnavailableError(
                f"{exc}: reinstall execloop (`pip install -e .`); its entry points register "
                "the kernel provisioners"
            ) from exc
        except ExecloopError:
            raise
        except Exception as exc:  # jupyter_client and zmq raise plain errors
            raise SandboxStartError(f"kernel {name} did not start: {exc}") from exc

    async def _wait_ready(self, client: AsyncKernelClient) -> None:
        """A kernel_info reply proves the shell channel; an iopub message of ours (or the
        kernel's welcome to a new subscriber) proves iopub. No fixed sleep."""
        while True:
            msg_id = client.kernel_info()
            if await _shell_reply(client, msg_id, _REPLY_S):
                while True:
                    try:
                        msg = await client.get_iopub_msg(timeout=_SILENCE_S)
                    except queue.Empty:
                        break
                    if msg["msg_type"] == "iopub_welcome" or _parent(msg) == msg_id:
                        return
            if not await self.manager.is_alive():
                raise SandboxStartError(
                    f"the kernel exited while starting; logs:\n{await self.logs()}"
                )

    async def stop(self) -> None:
        """Kill now: the provisioner removes the container or process tree in one step (the
        manager's polite shutdown would spend seconds on a kernel nobody will use again), then
        the manager drops its files, sockets and zmq context."""
        client, self._client = self._client, None
        if client is not None:
            client.stop_channels()
        try:
            if self.manager.provisioner is not None:
                await self.manager.provisioner.cleanup(restart=False)
        finally:
            try:
                await self.manager.cleanup_resources()
            except Exception as exc:  # what it cleans is gone already or was never made
                log.debug("kernel manager cleanup: %s", exc)

    # -- running cells ---------------------------------------------------------------------
    async def run(
        self, code: str, collector: OutputCollector, deadline: float, save: SaveOutput
    ) -> RunEnd:
        """Run one cell; its messages go to ``collector``, its rich outputs to ``save``. The
        kernel's own check after the cell (``kernel_code.SESSION_HOOKS``) reaches
        ``collector.trouble`` before the kernel reports idle."""
        client = self.client
        msg_id = client.execute(
            code, silent=False, store_history=False, allow_stdin=False, stop_on_error=False
        )
        ended = await self._drain(msg_id, collector, deadline, save)
        if ended is None:
            await _shell_reply(client, msg_id, _REPLY_S)
            return RunEnd(None)
        if ended is not ExitReason.KILLED:  # a deadline or a flood: interrupt, then kill
            collector.frozen = True
            await self.manager.interrupt_kernel()
            grace = time.monotonic() + INTERRUPT_GRACE_S
            after = await self._drain(msg_id, collector, grace, save)
            if after is None:
                await _shell_reply(client, msg_id, _REPLY_S)
                return RunEnd(ended)
            await self.stop()
            why = "died when interrupted" if after is ExitReason.KILLED else "ignored the interrupt"
            return RunEnd(ended, died=f"{ended.value}, and the kernel {why}")
        provisioner = self.provisioner
        reason, status = await provisioner.death_reason(), await provisioner.poll()
        await self.stop()
        return RunEnd(reason, died=f"the kernel died ({reason.value}, exit status {status})")

    async def run_silently(self, code: str) -> str | None:
        """execloop's own code in the kernel: no output kept, no history, a short deadline.
        Returns the error it raised (``"ename: evalue"``), None when it ran."""
        msg_id = self.client.execute(code, silent=True, store_history=False, allow_stdin=False)
        collector = OutputCollector(keep=1024, limit=1 << 20)
        collector.frozen = True
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        if await self._drain(msg_id, collector, deadline, _discard) is not None:
            return "it did not finish in time"
        reply = await _shell_reply(self.client, msg_id, _REPLY_S)
        content = {} if reply is None else reply.get("content", {})
        if content.get("status") == "error":
            return f"{content.get('ename')}: {content.get('evalue')}"
        return None

    async def _drain(
        self, msg_id: str, collector: OutputCollector, deadline: float, save: SaveOutput
    ) -> ExitReason | None:
        """Read the cell's iopub messages until idle (None), the deadline (``TIMEOUT``), the
        output limit (``OUTPUT_LIMIT``) or the kernel's death (``KILLED``)."""
        client = self.client
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await client.get_iopub_msg(timeout=min(left, _SILENCE_S))
            except queue.Empty:
                if not await self.manager.is_alive():
                    return ExitReason.KILLED
                continue
            if _parent(msg) != msg_id:
                continue
            for suffix, data in collector.add(msg):
                await save(suffix, data)
            if collector.idle:
                return None
            if collector.over_limit and not collector.frozen:
                return ExitReason.OUTPUT_LIMIT
        return ExitReason.TIMEOUT


def _parent(msg: dict[str, object]) -> object:
    header = msg.get("parent_header")
    return header.get("msg_id") if isinstance(header, dict) else None


async def _shell_reply(
    client: AsyncKernelClient, msg_id: str, timeout: float
) -> dict[str, Any] | None:
    """Consume the shell reply to ``msg_id`` (older replies are dropped on the way)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            reply: dict[str, Any] = await client.get_shell_msg(timeout=left)
        except queue.Empty:
            return None
        if _parent(reply) == msg_id:
            return reply
    return None


async def _discard(suffix: str, data: bytes) -> None:
    return None
