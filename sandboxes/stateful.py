"""Sandboxes driven through the in-sandbox helper over a Unix socket.

The host listens on a socket in a private directory that the backend mounts into the sandbox;
the helper connects out, so no port and no network exist. This class owns the protocol, the
host-side deadline and the bookkeeping; a backend only says how to launch, kill, inspect and
remove its sandbox. A deadline or a cancelled call kills the sandbox: its state can no longer
be trusted, so later calls raise ``SandboxClosedError`` naming what happened.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import ValidationError

from execloop.errors import ProtocolError, SandboxClosedError, SandboxStartError, TransferError
from execloop.sandboxes import helper, transfer
from execloop.sandboxes.base import (
    DEFAULT_MANIFEST_LIMIT,
    Artifact,
    ExecResult,
    ExitReason,
    Manifest,
    Sandbox,
    check_manifest_limit,
)
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = ["HelperSandbox", "MAX_DOWNLOAD_BYTES", "SOCKET_NAME"]

SOCKET_NAME = "ctl.sock"
MAX_DOWNLOAD_BYTES = 2 * 1024**3
_POLL_S = 0.25

log = logging.getLogger("execloop.sandboxes")


class HelperSandbox(Sandbox):
    """Common machinery of the backends that run ``execloop.sandboxes.helper`` inside."""

    backend_name = "helper"

    def __init__(self, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self.socket_dir: Path | None = None
        self._stream: anyio.abc.SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._lock = anyio.Lock()
        self._dead: str | None = None
        self.exec_count = 0

    # -- what a backend provides ----------------------------------------------------------
    @abc.abstractmethod
    async def _launch(self, socket_dir: Path) -> None:
        """Start the sandbox so that its helper connects to ``socket_dir/ctl.sock``."""

    @abc.abstractmethod
    async def _is_running(self) -> bool:
        """Whether the sandbox process/container is still alive (polled during start)."""

    @abc.abstractmethod
    async def _kill(self) -> None:
        """Kill the sandbox at once (whole container or process tree)."""

    @abc.abstractmethod
    async def _death_reason(self) -> ExitReason:
        """After the helper vanished: ``OOM`` if the kernel's OOM killer did it, else ``KILLED``."""

    @abc.abstractmethod
    async def _remove(self) -> None:
        """Release everything the sandbox held. Must be idempotent."""

    async def _startup_logs(self) -> str:
        """Tail of the sandbox's own logs, for start errors."""
        return ""

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._ensure_open()
        if self._stream is not None:
            return
        try:
            await self._start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()  # a failed start leaves nothing behind
            raise

    async def _start(self) -> None:
        # The sandbox user (uid 1000) must reach the socket; the directory name is random.
        self.socket_dir = make_temp_dir("control", mode=0o711)
        path = self.socket_dir / SOCKET_NAME
        listener = await anyio.create_unix_listener(path)
        try:
            os.chmod(path, 0o666)
            await self._launch(self.socket_dir)
            self._stream = await self._accept(listener)
        finally:
            await listener.aclose()
            path.unlink(missing_ok=True)
        self._reader = BufferedByteReceiveStream(self._stream)
        hello, _ = await self._read_frame(max_body=0)
        if hello.get("op") != "hello":
            raise SandboxStartError(f"the helper greeted with {hello!r} instead of hello")

    async def _accept(self, listener: anyio.abc.SocketListener) -> anyio.abc.SocketStream:
        deadline = time.monotonic() + self.spec.start_timeout_s
        while time.monotonic() < deadline:
            with anyio.move_on_after(_POLL_S):
                return await listener.accept()
            if not await self._is_running():
                logs = await self._startup_logs()
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
            if self._stream is not None:
                await self._stream.aclose()
                self._stream = None
            await self._remove()
            if self.socket_dir is not None:
                remove_temp_dir(self.socket_dir)

    def _ensure_open(self) -> None:
        if self._dead is not None:
            raise SandboxClosedError(
                f"the sandbox died earlier ({self._dead}); start a new one to run more code"
            )
        super()._ensure_open()

    # -- protocol ---------------------------------------------------------------------------
    async def _read_frame(self, *, max_body: int) -> tuple[dict[str, Any], bytes]:
        assert self._reader is not None
        prefix = await self._reader.receive_exactly(helper.FRAME_PREFIX.size)
        header_len, body_len = helper.FRAME_PREFIX.unpack(prefix)
        if header_len > helper.MAX_HEADER_BYTES or body_len > max_body:
            raise ProtocolError(
                f"helper frame too large (header {header_len} B, body {body_len} B)"
            )
        try:
            header = json.loads(await self._reader.receive_exactly(header_len))
        except ValueError as exc:
            raise ProtocolError(f"helper sent invalid JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise ProtocolError("helper sent a non-object header")
        body = await self._reader.receive_exactly(body_len) if body_len else b""
        return header, body

    async def _roundtrip(
        self, request: dict[str, Any], body: bytes = b"", *, max_body: int = 0
    ) -> tuple[dict[str, Any], bytes]:
        assert self._stream is not None
        await self._stream.send(helper.encode_frame(request, body))
        return await self._read_frame(max_body=max_body)

    async def _call(
        self,
        request: dict[str, Any],
        body: bytes = b"",
        *,
        timeout: float,
        max_body: int = 0,
    ) -> tuple[dict[str, Any], bytes] | ExitReason:
        """One request under a host-side deadline; an ``ExitReason`` if the sandbox ended."""
        self._ensure_open()
        if self._stream is None:
            raise SandboxClosedError("the sandbox was never started; use `async with` or start()")
        async with self._lock:
            try:
                with anyio.move_on_after(timeout):
                    return await self._roundtrip(request, body, max_body=max_body)
                await self._terminate("timed out")
                return ExitReason.TIMEOUT
            except (
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                reason = await self._death_reason()
                await self._terminate(f"the helper vanished: {reason.value}")
                return reason
            except BaseException:  # cancelled or protocol error: the session cannot continue
                with anyio.CancelScope(shield=True):
                    await self._terminate("interrupted mid-call")
                raise

    async def _terminate(self, why: str) -> None:
        self._dead = f"{why} during call #{self.exec_count}"
        log.info("%s sandbox %s", self.backend_name, self._dead)
        with anyio.CancelScope(shield=True):
            await self._kill()
            if self._stream is not None:
                await self._stream.aclose()
                self._stream = None
            await self._remove()

    # -- the contract -------------------------------------------------------------------
    async def exec(self, code: str, *, timeout: float | None = None) -> ExecResult:
        return await self._exec({"code": code}, timeout)

    async def exec_file(
        self, path: str, *, args: Sequence[str] = (), timeout: float | None = None
    ) -> ExecResult:
        return await self._exec({"path": path, "args": list(args)}, timeout)

    async def _exec(self, fields: dict[str, Any], timeout: float | None) -> ExecResult:
        self.exec_count += 1
        limit = timeout if timeout is not None else self.spec.timeout_s
        request = {
            "op": "exec",
            "keep": self.spec.max_output_bytes,
            "limit": self.spec.output_limit_bytes,
            "keep_background": self.spec.keep_background_processes,
            **fields,
        }
        started = time.monotonic()
        outcome = await self._call(request, timeout=limit)
        if isinstance(outcome, ExitReason):
            return ExecResult(
                exit_code=None,
                exit_reason=outcome,
                stderr=f"execloop: the sandbox was killed ({outcome.value}) "
                f"after {time.monotonic() - started:.2f} s; its state is gone",
                duration_s=time.monotonic() - started,
            )
        reply, _ = outcome
        self._raise_for(reply)
        try:
            return ExecResult.model_validate({k: v for k, v in reply.items() if k != "ok"})
        except ValidationError as exc:
            raise ProtocolError(f"malformed exec reply from the helper: {exc}") from exc

    def _raise_for(self, reply: dict[str, Any], error: type[Exception] = ProtocolError) -> None:
        if not reply.get("ok"):
            raise error(str(reply.get("error", "the helper reported an unknown error")))

    async def _file_call(
        self, request: dict[str, Any], body: bytes = b"", *, max_body: int = 0
    ) -> tuple[dict[str, Any], bytes]:
        outcome = await self._call(request, body, timeout=self.spec.timeout_s, max_body=max_body)
        if isinstance(outcome, ExitReason):
            raise SandboxClosedError(f"the sandbox ended ({outcome.value}) during a file transfer")
        reply, reply_body = outcome
        self._raise_for(reply, TransferError)
        return reply, reply_body

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        transfer.check_archive(archive)
        await self._file_call({"op": "put", "dest": dest}, archive)

    async def download_tar(self, path: str) -> bytes:
        _, archive = await self._file_call({"op": "get", "path": path}, max_body=MAX_DOWNLOAD_BYTES)
        transfer.check_archive(archive)
        return archive

    async def manifest(self, path: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        limit = check_manifest_limit(limit)
        reply, body = await self._file_call(
            {"op": "manifest", "path": path, "limit": limit},
            max_body=helper.manifest_body_bound(limit),
        )
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
