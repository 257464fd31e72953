"""The host's end of the helper protocol (``helper.py`` describes it): frames, streams, sockets.

``HelperChannel`` speaks one request at a time over a connected stream and knows nothing of
deadlines or of the sandbox's life (``stateful.HelperSandbox`` owns those). Transfers stream:
an upload is sent as chunks while it is read, a download is written to a sink as it arrives,
so host memory stays bounded whatever their size. Everything the helper sends is checked:
it shares its process with the user's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.abc
import anyio.to_thread

from execloop.errors import ProtocolError, TransferError
from execloop.sandboxes import helper
from execloop.sandboxes.streaming import StreamName

__all__ = ["HelperChannel", "Reply", "private_unix_listener"]

Reply = dict[str, Any]
_SALVAGE_S = 0.5
_COALESCE_BYTES = helper.CHUNK_BYTES // 2
_HIGH_WATER = 2 * helper.CHUNK_BYTES + 64 * 1024  # bytes read ahead of the reader, at most
FRAME_PREFIX_BYTES = helper.FRAME_PREFIX.size


async def private_unix_listener(
    path: Path, *, owner: tuple[int, int] | None
) -> anyio.abc.SocketListener:
    """A listening socket at ``path``, mode 0600, that only ``owner`` (a host uid/gid handed
    the socket when execloop is root) or else this process's user can connect to.

    It is bound in a private folder and moved into place once its mode and owner are set, so
    it is never reachable by anyone else, not even for a moment."""
    staging = Path(tempfile.mkdtemp(prefix=".bind-", dir=path.parent))  # mode 0700
    bound = staging / path.name
    try:
        listener = await anyio.create_unix_listener(bound)
        try:
            os.chmod(bound, 0o600)
            if owner is not None and os.geteuid() == 0:
                os.chown(bound, *owner)
            os.rename(bound, path)
        except BaseException:
            await listener.aclose()
            raise
    finally:  # a file-system call can take milliseconds on a busy host: not on the loop
        with anyio.CancelScope(shield=True):
            remove = functools.partial(shutil.rmtree, staging, ignore_errors=True)
            await anyio.to_thread.run_sync(remove)
    return listener


class _Frames(asyncio.Protocol):
    """The socket's bytes, buffered until a whole frame is in: one wake-up per reply.

    At most ``max(need, _HIGH_WATER)`` bytes (plus one read) are held: past that, reading
    pauses until the channel takes frames out. Writes past the transport's high-water mark
    wait in ``drain``."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.need = FRAME_PREFIX_BYTES  # bytes the reader waits for before it looks again
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.error: Exception | None = None
        self.read_paused = False
        self.write_paused = False
        self.expired = False  # the current read's deadline passed

    def expire(self) -> None:
        self.expired = True
        self._wake()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= self.need:
            self._wake()
        if not self.read_paused and len(self.buffer) >= max(self.need, _HIGH_WATER):
            assert self.transport is not None
            self.read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # nothing is sent after the helper's end is gone: close

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.drained = None

    def consumed(self) -> None:
        """The reader took bytes out: read more once there is room."""
        if self.read_paused and len(self.buffer) < max(self.need, _HIGH_WATER):
            assert self.transport is not None
            self.read_paused = False
            self.transport.resume_reading()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.waiter = None


class HelperChannel:
    """Requests to one connected helper. A vanished helper raises ``anyio.EndOfStream`` (or
    ``IncompleteRead`` mid-frame, ``BrokenResourceError`` on a reset, ``ClosedResourceError``
    once closed): the caller decides what it means.

    It drives the socket through one asyncio protocol rather than layered streams: a reply
    costs one wake-up and one write, and a deadline is one timer, not a cancel scope."""

    def __init__(self, transport: asyncio.Transport, frames: _Frames) -> None:
        self._transport = transport
        self._frames = frames
        self._closed = False

    @classmethod
    async def connect(cls, stream: anyio.abc.SocketStream) -> HelperChannel:
        """Take over the connected socket of ``stream`` (an accepted helper connection)."""
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock = socket.socket(raw.family, raw.type, fileno=os.dup(raw.fileno()))
        try:
            await stream.aclose()
            sock.setblocking(False)
            frames = _Frames()
            loop = asyncio.get_running_loop()
            transport, _ = await loop.connect_accepted_socket(lambda: frames, sock)
        except BaseException:
            sock.close()
            raise
        return cls(transport, frames)

    async def aclose(self) -> None:
        self._closed = True
        self._transport.abort()  # nothing is owed to a helper being dropped

    async def send(self, frame: bytes) -> None:
        self._check_open()
        self._transport.write(frame)
        frames = self._frames
        if frames.write_paused:
            if frames.drained is None:
                frames.drained = asyncio.get_running_loop().create_future()
            await frames.drained
            self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._frames.eof or self._transport.is_closing():
            raise anyio.BrokenResourceError

    async def read_frame(
        self, *, max_body: int, chunk_ok: bool = False
    ) -> tuple[Reply | None, bytes]:
        """``(header, body)``; the header is None for a chunk (only if ``chunk_ok``)."""
        frame = await self._read(max_body=max_body, chunk_ok=chunk_ok, deadline=None)
        assert frame is not None  # there was no deadline
        return frame

    async def _read(
        self, *, max_body: int, chunk_ok: bool, deadline: float | None
    ) -> tuple[Reply | None, bytes] | None:
        """``read_frame``, or None once the event loop's clock passes ``deadline``."""
        frames = self._frames
        buffer = frames.buffer
        loop = asyncio.get_running_loop()
        frames.expired = False
        timer = None if deadline is None else loop.call_at(deadline, frames.expire)
        try:
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError
                need = FRAME_PREFIX_BYTES
                if len(buffer) >= need:
                    header_len, body_len = helper.FRAME_PREFIX.unpack_from(buffer)
                    if header_len > helper.MAX_HEADER_BYTES or body_len > max_body:
                        raise ProtocolError(
                            f"helper frame too large (header {header_len} B, body {body_len} B)"
                        )
                    need += header_len + body_len
                    if len(buffer) >= need:
                        return self._take(header_len, body_len, chunk_ok=chunk_ok)
                if frames.eof:
                    if frames.error is not None:
                        raise anyio.BrokenResourceError from frames.error
                    raise anyio.IncompleteRead if buffer else anyio.EndOfStream
                if frames.expired:
                    return None
                frames.need = need
                frames.consumed()  # a paused socket resumes if the frame needs more room
                frames.waiter = loop.create_future()
                await frames.waiter
        finally:
            if timer is not None:
                timer.cancel()
            frames.need = FRAME_PREFIX_BYTES
            frames.waiter = None

    def _take(
        self, header_len: int, body_len: int, *, chunk_ok: bool
    ) -> tuple[Reply | None, bytes]:
        frames = self._frames
        buffer = frames.buffer
        start = FRAME_PREFIX_BYTES + header_len
        body = bytes(buffer[start : start + body_len])
        raw_header = bytes(buffer[FRAME_PREFIX_BYTES:start]) if header_len else b""
        del buffer[: start + body_len]
        frames.consumed()
        if header_len == 0:
            if not chunk_ok or body_len == 0:
                raise ProtocolError("the helper sent a stream chunk where a reply was due")
            return None, body
        try:
            compact = helper.decode_exec_reply(raw_header, body)
            if compact is not None:
                return compact, b""
            header = json.loads(raw_header)
        except ValueError as exc:
            raise ProtocolError(f"helper sent an invalid reply: {exc}") from exc
        if not isinstance(header, dict):
            raise ProtocolError("helper sent a non-object header")
        return header, body

    async def read_reply(self, *, max_body: int = 0) -> tuple[Reply, bytes]:
        header, body = await self.read_frame(max_body=max_body)
        assert header is not None  # chunks were refused
        return header, body

    async def request(
        self, header: Reply | bytes, *, max_body: int = 0, deadline: float | None = None
    ) -> tuple[Reply, bytes] | None:
        """A request whose reply is one frame (exec, manifest, ping); None if the reply was
        not in by ``deadline`` (the event loop's clock). ``header`` may be a whole frame
        already (``helper.encode_exec_request``)."""
        await self.send(header if isinstance(header, bytes) else helper.encode_frame(header))
        frame = await self._read(max_body=max_body, chunk_ok=False, deadline=deadline)
        if frame is None:
            return None
        reply, body = frame
        assert reply is not None  # chunks were refused
        return reply, body

    async def request_streaming(
        self, header: Reply, *, deadline: float, on_output: Callable[[StreamName, bytes], None]
    ) -> tuple[Reply, bytes] | None:
        """``request`` for an exec asked with ``stream: true``: its output frames go to
        ``on_output`` as they come, until the reply (which carries no body)."""
        await self.send(helper.encode_frame(header))
        while True:
            frame = await self._read(max_body=helper.CHUNK_BYTES, chunk_ok=False, deadline=deadline)
            if frame is None:
                return None
            reply, body = frame
            assert reply is not None  # chunks were refused
            if reply.get("op") != "output":
                if body:
                    raise ProtocolError("the helper sent a body with an exec reply")
                return reply, body
            stream = reply.get("stream")
            if stream not in ("stdout", "stderr"):
                raise ProtocolError(f"the helper sent output of an unknown stream {stream!r}")
            on_output(stream, body)

    async def put(self, header: Reply, chunks: AsyncGenerator[bytes, None]) -> Reply:
        """Upload: ask, and once the helper says ``go`` stream ``chunks`` (a tar). A failure
        reading the host's files ends the stream with ``abort`` and is the reply's error."""
        await self.send(helper.encode_frame(header))
        go, _ = await self.read_reply()
        if not go.get("ok") or not go.get("go"):
            return go
        host_error: str | None = None
        pending = bytearray()
        try:
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= _COALESCE_BYTES:
                    await self._send_chunks(pending)
            await self._send_chunks(pending)
        except (TransferError, OSError) as exc:
            host_error = str(exc)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()
        end: Reply = {"op": "end"} if host_error is None else {"op": "end", "abort": host_error}
        await self.send(helper.encode_frame(end))
        reply, _ = await self.read_reply()
        if host_error is not None and not reply.get("ended"):
            return {"ok": False, "error": host_error}
        return reply

    async def _send_chunks(self, pending: bytearray) -> None:
        while pending:
            piece = bytes(pending[: helper.CHUNK_BYTES])
            del pending[: helper.CHUNK_BYTES]
            await self.send(helper.encode_chunk(piece))

    async def get(self, header: Reply, sink: BinaryIO, *, max_bytes: int) -> Reply:
        """Download: the helper streams a tar, written to ``sink`` as it arrives (in a worker
        thread). Past ``max_bytes`` the rest is read and dropped, and the reply is an error."""
        await self.send(helper.encode_frame(header))
        first, _ = await self.read_reply()
        if not first.get("ok") or not first.get("stream"):
            return first
        total = 0
        while True:
            frame, body = await self.read_frame(max_body=helper.CHUNK_BYTES, chunk_ok=True)
            if frame is not None:
                if total > max_bytes and frame.get("ok"):
                    return {
                        "ok": False,
                        "error": f"{header['path']!r} is larger than {max_bytes} bytes",
                    }
                return frame
            total += len(body)
            if total <= max_bytes:
                await anyio.to_thread.run_sync(sink.write, body)

    async def salvage(self) -> Reply | None:
        """After the stream broke: a last frame saying why the session ended, if the helper
        sent one before it went away (``os._exit`` from a thread between requests)."""
        deadline = asyncio.get_running_loop().time() + _SALVAGE_S
        try:
            frame = await self._read(max_body=0, chunk_ok=False, deadline=deadline)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            return None
        except (anyio.ClosedResourceError, ProtocolError):
            return None
        if frame is not None and frame[0] is not None and frame[0].get("ended"):
            return frame[0]
        return None
