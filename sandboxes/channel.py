"""The host's end of the helper protocol (``helper.py`` describes it): frames, streams, sockets.

``HelperChannel`` speaks one request at a time over a connected stream and knows nothing of
deadlines or of the sandbox's life (``stateful.HelperSandbox`` owns those). Transfers stream:
an upload is sent as chunks while it is read, a download is written to a sink as it arrives,
so host memory stays bounded whatever their size. Everything the helper sends is checked:
it shares its process with the user's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from execloop.errors import ProtocolError, TransferError
from execloop.sandboxes import helper

__all__ = ["HelperChannel", "Reply", "private_unix_listener"]

Reply = dict[str, Any]
_SALVAGE_S = 0.5
_COALESCE_BYTES = helper.CHUNK_BYTES // 2


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
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return listener


class HelperChannel:
    """Requests to one connected helper. Stream errors (``anyio.EndOfStream`` and kin) pass
    through: the caller decides what a vanished helper means."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self._reader = BufferedByteReceiveStream(stream)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send(self, frame: bytes) -> None:
        await self.stream.send(frame)

    async def read_frame(
        self, *, max_body: int, chunk_ok: bool = False
    ) -> tuple[Reply | None, bytes]:
        """``(header, body)``; the header is None for a chunk (only if ``chunk_ok``)."""
        prefix = await self._reader.receive_exactly(helper.FRAME_PREFIX.size)
        header_len, body_len = helper.FRAME_PREFIX.unpack(prefix)
        if header_len > helper.MAX_HEADER_BYTES or body_len > max_body:
            raise ProtocolError(
                f"helper frame too large (header {header_len} B, body {body_len} B)"
            )
        if header_len == 0:
            if not chunk_ok or body_len == 0:
                raise ProtocolError("the helper sent a stream chunk where a reply was due")
            return None, await self._reader.receive_exactly(body_len)
        try:
            header = json.loads(await self._reader.receive_exactly(header_len))
        except ValueError as exc:
            raise ProtocolError(f"helper sent invalid JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise ProtocolError("helper sent a non-object header")
        body = await self._reader.receive_exactly(body_len) if body_len else b""
        return header, body

    async def read_reply(self, *, max_body: int = 0) -> tuple[Reply, bytes]:
        header, body = await self.read_frame(max_body=max_body)
        assert header is not None  # chunks were refused
        return header, body

    async def request(self, header: Reply, *, max_body: int = 0) -> tuple[Reply, bytes]:
        """A request whose reply is one frame (exec, manifest, ping)."""
        await self.send(helper.encode_frame(header))
        return await self.read_reply(max_body=max_body)

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
        with anyio.move_on_after(_SALVAGE_S):
            try:
                header, _ = await self.read_frame(max_body=0)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return None
            except (anyio.ClosedResourceError, ProtocolError):
                return None
            if header is not None and header.get("ended"):
                return header
        return None
