"""The helper channel: sandboxes driven through the in-sandbox helper over a Unix socket.

The host listens on a socket in a private directory that the placement mounts into the sandbox;
the helper connects out, so no port and no network exist. This class owns the host-side
deadline and the session's life (``channel.HelperChannel`` speaks the protocol); where the
helper runs is its ``Placement`` (``placements/``: launch, kill, inspect, remove). A deadline
or a cancelled call kills the sandbox: its state can no longer be trusted. So does a script
that ends the session itself (``os._exit``) or leaves the helper unable to go on (no descriptor
or memory left): its exec still returns an ``ExecResult``, and later calls raise
``SandboxClosedError`` naming why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from execloop.errors import ProtocolError, SandboxClosedError, SandboxStartError, TransferError
from execloop.sandboxes import helper, transfer
from execloop.sandboxes.base import (
    DEFAULT_MANIFEST_LIMIT,
    Artifact,
    Capability,
    ExecResult,
    ExitReason,
    Manifest,
    Sandbox,
    check_exec_args,
    check_manifest_limit,
)
from execloop.sandboxes.channel import HelperChannel, Reply, private_unix_listener
from execloop.sandboxes.exec_replies import (
    BrokenReply,
    garbled_result,
    killed_result,
    plain,
    result_from_reply,
)
from execloop.sandboxes.placements.base import Launch, Placement
from execloop.sandboxes.progress import guest_environment, ship_progress_module
from execloop.sandboxes.spec import CHECKPOINT_ENV, GUEST_CHECKPOINTS, SandboxSpec
from execloop.sandboxes.streaming import OnOutput, OutputStream, check_on_output
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = ["HelperSandbox", "MAX_DOWNLOAD_BYTES", "SOCKET_NAME"]

SOCKET_NAME = "ctl.sock"
MAX_DOWNLOAD_BYTES = 2 * 1024**3
_POLL_S = 0.25
_STREAM_ERRORS = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
T = TypeVar("T")

log = logging.getLogger("execloop.sandboxes")


class HelperSandbox(Sandbox):
    """The helper on a placement: ``docker``, ``local`` and ``restricted`` are this class
    with a container, bubblewrap or host-process placement."""

    backend_name = "helper"
    # what the backend offers; a helper is always stateful
    offers: ClassVar[frozenset[Capability]] = frozenset({Capability.STATEFUL})

    def __init__(self, spec: SandboxSpec, *, placement: Callable[[str], Placement]) -> None:
        """``placement`` makes the placement for a session id."""
        super().__init__(spec)
        self.placement = placement(self.session_id)
        self.socket_dir: Path | None = None
        self._oom_before: int | None = None
        self._channel: HelperChannel | None = None
        self._lock = anyio.Lock(fast_acquire=True)  # no loop pass when uncontended
        self._dead: str | None = None
        self.exec_count = 0

    @property
    def ended(self) -> str | None:
        return self._dead

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.offers | {Capability.STREAMING}  # every helper streams (output frames)

    @property
    def control_dir(self) -> Path | None:
        """The socket directory, mounted at ``GUEST_CONTROL_DIR`` where the backend offers
        ``Capability.TOOLS``."""
        if Capability.TOOLS not in self.offers or self._closed:
            return None
        return self.socket_dir

    @property
    def control_owner(self) -> tuple[int, int] | None:
        return self.socket_owner

    @property
    def socket_owner(self) -> tuple[int, int] | None:
        """The host uid/gid the sandbox's code connects as, when execloop (as root) must hand
        its sockets over; None when it is this process's own user."""
        return self.placement.owner

    # -- what a backend may change --------------------------------------------------------
    def _command(self, socket_dir: Path) -> list[str]:
        """The helper's command line inside the placement."""
        where = self.placement
        command = [
            where.python,
            where.helper,
            f"{where.guest_control_dir(socket_dir)}/{SOCKET_NAME}",
        ]
        command += ["--workspace", where.guest_workspace(self.spec.workspace_dir)]
        if where.own_pid_namespace:  # every other process it sees is the sandbox's
            command.append("--reap-all")
        return [*command, "--session", self.session_id]

    def _environment(self) -> dict[str, str]:
        """The environment the helper starts with (the host's is never passed on whole)."""
        env = {"HOME": "/tmp", **self.spec.env}
        if self.spec.checkpoint_dir is not None:
            env[CHECKPOINT_ENV] = GUEST_CHECKPOINTS
        return env

    async def _launch(self, socket_dir: Path) -> None:
        command = self._command(socket_dir)
        # every session can import execloop_progress from its control directory
        ship_progress_module(socket_dir)
        guest_dir = self.placement.guest_control_dir(socket_dir)
        env = guest_environment(self._environment(), guest_dir)
        await self.placement.launch(
            Launch(
                command=command, control_dir=socket_dir, workspace=self.spec.workspace_dir, env=env
            )
        )

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._ensure_open()
        if self._channel is not None:
            return
        try:
            await self._start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()  # a failed start leaves nothing behind
            raise

    async def _start(self) -> None:
        # Others may traverse the folder, never list it, and the socket is the sandbox user's.
        self.socket_dir = make_temp_dir("control", mode=0o711, sockets=True)
        path = self.socket_dir / SOCKET_NAME
        listener = await private_unix_listener(path, owner=self.socket_owner)
        try:
            await self._launch(self.socket_dir)
            self._channel = await HelperChannel.connect(await self._accept(listener))
        finally:
            await listener.aclose()
            path.unlink(missing_ok=True)
        hello, _ = await self._channel.read_reply()
        if hello.get("op") != "hello":
            raise SandboxStartError(f"the helper greeted with {hello!r} instead of hello")

    async def _accept(self, listener: anyio.abc.SocketListener) -> anyio.abc.SocketStream:
        deadline = time.monotonic() + self.spec.start_timeout_s
        while time.monotonic() < deadline:
            with anyio.move_on_after(_POLL_S):
                return await listener.accept()
            if not await self.placement.alive():
                logs = await self.placement.logs()
                raise SandboxStartError(
                    f"{self.backend_name} sandbox exited before its helper connected; "
                    f"logs:\n{logs[-2000:]}"
                )
        raise SandboxStartError(
            f"{self.backend_name} sandbox helper did not connect within "
            f"{self.spec.start_timeout_s:g} s; raise start_timeout_s or check `execloop doctor`"
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._channel is not None:
                await self._channel.aclose()
                self._channel = None
            await self.placement.remove()
            if self.socket_dir is not None:
                await anyio.to_thread.run_sync(remove_temp_dir, self.socket_dir)

    def _ensure_open(self) -> None:
        if self._dead is not None:
            raise SandboxClosedError(
                f"the sandbox ended earlier ({self._dead}); start a new one to run more code",
                sandbox_id=self.session_id,
                ended=self._dead,
            )
        super()._ensure_open()

    # -- calls ------------------------------------------------------------------------------
    async def _call(
        self,
        exchange: Callable[[HelperChannel, float], Awaitable[T | None]],
        *,
        timeout: float,
        scoped: bool,
    ) -> T | Reply | ExitReason:
        """One exchange under a host-side deadline: its result, a salvaged reply saying how
        the session ended, or the ``ExitReason`` of a sandbox that is gone.

        ``exchange(channel, deadline)`` returns None if the deadline (the event loop's clock)
        passed. One that also waits on other things (the host's files) is ``scoped``: a
        cancel scope bounds it as a whole. An exec needs only the channel's timer."""
        self._ensure_open()
        if self._channel is None:
            raise SandboxClosedError("the sandbox was never started; use `async with` or start()")
        async with self._lock:
            self._ensure_open()  # an earlier call may have ended the session meanwhile
            channel = self._channel
            assert channel is not None
            deadline = asyncio.get_running_loop().time() + timeout
            try:
                outcome: T | None = None
                if scoped:
                    with anyio.move_on_after(timeout):
                        outcome = await exchange(channel, deadline)
                else:
                    outcome = await exchange(channel, deadline)
                if outcome is not None:
                    return outcome
                await self._terminate("timed out")
                return ExitReason.TIMEOUT
            except _STREAM_ERRORS:
                salvaged = await channel.salvage()
                if salvaged is not None:
                    return salvaged
                reason = await self.placement.death_reason(oom_before=self._oom_before)
                await self._terminate(f"the helper vanished: {reason.value}")
                return reason
            except ProtocolError:  # the session cannot continue
                with anyio.CancelScope(shield=True):
                    await self._terminate("the channel broke the protocol")
                raise
            except BaseException:  # cancelled: the session cannot continue
                with anyio.CancelScope(shield=True):
                    await self._terminate("interrupted mid-call")
                raise

    async def _terminate(self, why: str) -> None:
        self._dead = f"{why} during call #{self.exec_count}"
        log.info("%s sandbox %s", self.backend_name, self._dead)
        with anyio.CancelScope(shield=True):
            await self.placement.kill()
            if self._channel is not None:
                await self._channel.aclose()
                self._channel = None
            await self.placement.remove()

    async def _file_call(
        self, exchange: Callable[[HelperChannel, float], Awaitable[T | None]], *, scoped: bool
    ) -> T:
        """A file operation: a sandbox that ended or died is ``SandboxClosedError``."""
        outcome = await self._call(exchange, timeout=self.spec.timeout_s, scoped=scoped)
        if isinstance(outcome, ExitReason):
            raise SandboxClosedError(
                f"the sandbox ended ({outcome.value}) during a file transfer",
                sandbox_id=self.session_id,
                ended=self._dead,
            )
        reply = outcome[0] if isinstance(outcome, tuple) else outcome
        if isinstance(reply, dict) and reply.get("ended"):
            await self._end_session(reply)  # a salvaged reply always has "ended"
        return outcome  # type: ignore[return-value]

    async def _end_session(self, reply: Reply) -> None:
        """The helper said the session cannot go on: close it, and say why."""
        why = plain(reply["ended"])
        await self._terminate(why)
        raise SandboxClosedError(
            f"the sandbox ended: {why}", sandbox_id=self.session_id, ended=self._dead
        )

    @staticmethod
    def _raise_for(reply: Reply) -> None:
        if not reply.get("ok"):
            raise TransferError(str(reply.get("error", "the helper reported an unknown error")))

    # -- the contract -------------------------------------------------------------------
    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        limit = check_exec_args(timeout=timeout, code=code)
        return await self._exec({"code": code}, limit, check_on_output(on_output))

    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        limit = check_exec_args(timeout=timeout, path=path, args=args)
        fields = {"path": path, "args": list(args)}
        return await self._exec(fields, limit, check_on_output(on_output))

    async def _exec(
        self, fields: dict[str, Any], timeout: float | None, on_output: OnOutput | None
    ) -> ExecResult:
        cgroup = self.placement.cgroup
        if cgroup is None:
            return await self._exec_once(fields, timeout, on_output)
        self._oom_before = cgroup.oom_kills()
        result = await self._exec_once(fields, timeout, on_output)
        # the sandbox may be gone (killed, timed out): then its cgroup's last reading counts
        peak, ooms = await self.placement.memory()
        update: dict[str, Any] = {"peak_memory_bytes": peak}
        survived = result.exit_reason in (ExitReason.OK, ExitReason.ERROR)
        if survived and ooms is not None and ooms > (self._oom_before or 0):
            # a child was OOM-killed, not the helper
            note = f"execloop: the OOM killer ended a process (memory={self.spec.memory} bytes)"
            update |= {"exit_reason": ExitReason.OOM, "stderr": f"{result.stderr}\n{note}\n"}
        return result.model_copy(update=update)

    async def _exec_once(
        self, fields: dict[str, Any], timeout: float | None, on_output: OnOutput | None
    ) -> ExecResult:
        self._ensure_open()
        self.exec_count += 1
        request = {
            "op": "exec",
            "keep": self.spec.max_output_bytes,
            "limit": self.spec.output_limit_bytes,
            "keep_background": self.spec.keep_background_processes,
            **fields,
        }
        started = time.monotonic()
        stream = None
        frame: bytes | Reply = request
        bound = 0
        if on_output is not None:  # only then does the helper send output frames
            request["stream"] = True
            stream = OutputStream(on_output, limit=self.spec.max_output_bytes)
        elif "code" in fields:  # the common exec: no JSON either way
            frame = helper.encode_exec_request(
                fields["code"],
                keep=self.spec.max_output_bytes,
                limit=self.spec.output_limit_bytes,
                keep_background=self.spec.keep_background_processes,
            )
            bound = helper.exec_reply_bound(self.spec.max_output_bytes)

        async def exchange(channel: HelperChannel, deadline: float) -> Reply | None:
            if stream is None:
                reply = await channel.request(frame, max_body=bound, deadline=deadline)
            else:
                reply = await channel.request_streaming(
                    request, deadline=deadline, on_output=stream.feed
                )
                stream.close()
            return None if reply is None else reply[0]

        try:
            outcome = await self._call(
                exchange, timeout=timeout or self.spec.timeout_s, scoped=False
            )
        except ProtocolError as exc:  # _call has closed the session
            return self._garbled(exc, started)
        if isinstance(outcome, ExitReason):
            return killed_result(outcome, started)
        result = result_from_reply(outcome, started)
        if isinstance(result, BrokenReply):
            await self._terminate(result.why)
            return self._garbled(result.error, started)
        if outcome.get("ended"):
            await self._terminate(plain(outcome["ended"]))
        return result

    def _garbled(self, exc: ProtocolError, started: float) -> ExecResult:
        log.warning("%s sandbox %s: %s", self.backend_name, self.session_id, exc)
        return garbled_result(exc, started)

    async def warm(self) -> None:
        outcome = await self._file_call(
            lambda channel, deadline: channel.request({"op": "warm"}, deadline=deadline),
            scoped=False,
        )
        if not outcome[0].get("ok"):
            raise ProtocolError(f"the helper failed its warm-up: {plain(outcome[0].get('error'))}")

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        transfer.check_archive(archive)
        await self._put_archive(archive, dest)

    async def _put_archive(self, archive: bytes, dest: str) -> None:
        """Upload an archive as it is (``upload_tar`` checks it first; the helper does too)."""
        files, size = transfer.archive_totals(archive)

        async def chunks() -> AsyncGenerator[bytes, None]:
            view = memoryview(archive)
            for start in range(0, len(view), helper.CHUNK_BYTES):
                yield bytes(view[start : start + helper.CHUNK_BYTES])

        await self._put(chunks(), dest, size=size, files=files)

    async def _upload_path(self, source: Path, dest: str) -> None:
        files, size = await anyio.to_thread.run_sync(transfer.measure_path, source)
        await self._put(transfer.tar_chunks(source), dest, size=size, files=files)

    async def _put(
        self, chunks: AsyncGenerator[bytes, None], dest: str, *, size: int, files: int
    ) -> None:
        transfer.check_name(dest, what="upload destination")
        request = {"op": "put", "dest": dest, "bytes": size, "files": files}
        try:
            reply = await self._file_call(
                lambda channel, _: channel.put(request, chunks), scoped=True
            )
        finally:
            await chunks.aclose()
        self._raise_for(reply)

    async def _get(self, path: str, sink: BinaryIO) -> None:
        """Stream the tar of ``path`` in the workspace into ``sink``."""
        transfer.check_name(path)
        request = {"op": "get", "path": path}
        reply = await self._file_call(
            lambda channel, _: channel.get(request, sink, max_bytes=MAX_DOWNLOAD_BYTES),
            scoped=True,
        )
        self._raise_for(reply)

    async def download_tar(self, path: str) -> bytes:
        with tempfile.TemporaryFile() as spool:  # unnamed: nothing to leak
            await self._get(path, spool)
            transfer.check_archive(spool)
            spool.seek(0)
            return spool.read()

    async def download(self, path: str, dest: Path) -> list[Path]:
        with tempfile.TemporaryFile() as spool:
            await self._get(path, spool)
            return await anyio.to_thread.run_sync(transfer.extract_tar, spool, dest)

    async def read_file(self, path: str) -> bytes:
        with tempfile.TemporaryFile() as spool:
            await self._get(path, spool)
            return await anyio.to_thread.run_sync(transfer.single_file, spool, path)

    async def manifest(self, path: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        limit = check_manifest_limit(limit)
        transfer.check_name(path)
        request = {"op": "manifest", "path": path, "limit": limit}
        bound = helper.manifest_body_bound(limit)
        reply, body = await self._file_call(
            lambda channel, deadline: channel.request(request, max_body=bound, deadline=deadline),
            scoped=False,
        )
        self._raise_for(reply)
        try:
            files = [Artifact.model_validate(item) for item in json.loads(body)]
            manifest = Manifest(
                files=files, total_files=reply["total_files"], total_bytes=reply["total_bytes"]
            )
        except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            raise ProtocolError(f"malformed manifest from the helper: {exc}") from exc
        if len(files) > limit or manifest.total_files < len(files):
            raise ProtocolError(
                f"the helper listed {len(files)} of {manifest.total_files} files (limit {limit})"
            )
        return manifest
