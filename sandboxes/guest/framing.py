"""The helper protocol's frames, shared by both sides (``channel.py`` is the host's end).

Every frame is ``!IQ`` (header length, body length), a header, then the body. A header is JSON
(always beginning with ``{``), or, for the common exec, a fixed struct told apart by its first
byte. A frame without a header is a *chunk* of a stream (at most ``CHUNK_BYTES``).
"""

from __future__ import annotations

import json
import struct

TYPE_CHECKING = False  # not typing's: importing typing costs every start 4 ms
if TYPE_CHECKING:
    import _socket
    from typing import Any

__all__ = [
    "CHUNK_BYTES",
    "ChunkReader",
    "ChunkWriter",
    "EXEC_REPLY",
    "EXEC_REQUEST",
    "EXIT_REASONS",
    "FRAME_PREFIX",
    "MAX_HEADER_BYTES",
    "Receiver",
    "decode_exec_reply",
    "encode_chunk",
    "encode_exec_request",
    "encode_frame",
    "encode_output",
    "encode_reply",
    "exec_reply_bound",
]

FRAME_PREFIX = struct.Struct("!IQ")
# The common exec travels without JSON (a JSON header always begins with "{", so a header's
# first byte tells the two apart): the request is EXEC_REQUEST (tag, keep, limit, flags) with
# the code as body; the reply is EXEC_REPLY (tag, exit code, reason, truncation flags,
# duration, peak memory or -1, stdout's length) with stdout then stderr as body, raw bytes
# that the host decodes. Streaming execs, files and whatever ends a session stay JSON.
EXEC_REQUEST = struct.Struct("!BQQB")
EXEC_REPLY = struct.Struct("!BiBBdqQ")
_EXEC_REQUEST_TAG, _EXEC_REPLY_TAG = 1, 2
_KEEP_BACKGROUND, _STDOUT_TRUNCATED, _STDERR_TRUNCATED = 1, 1, 2
EXIT_REASONS = ("ok", "error", "timeout", "oom", "killed", "output_limit")
_MARKER_BYTES = 128  # the omission marker and execloop's notes a kept stream may add
MAX_HEADER_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1 << 20
_RECV_BYTES = 1 << 12  # read-ahead of the control socket: a whole request, usually


def encode_frame(header: dict[str, Any], body: bytes = b"") -> bytes:
    data = json.dumps(header, separators=(",", ":")).encode()
    return FRAME_PREFIX.pack(len(data), len(body)) + data + body


def encode_exec_request(code: str, *, keep: int, limit: int, keep_background: bool) -> bytes:
    """A (non-streaming) exec of ``code`` in the compact form."""
    body = code.encode("utf-8", "surrogatepass")
    flags = _KEEP_BACKGROUND if keep_background else 0
    header = EXEC_REQUEST.pack(_EXEC_REQUEST_TAG, keep, limit, flags)
    return FRAME_PREFIX.pack(len(header), len(body)) + header + body


def _decode_exec_request(header: bytes, body: bytes) -> dict[str, Any]:
    _, keep, limit, flags = EXEC_REQUEST.unpack(header)
    code = body.decode("utf-8", "surrogatepass")
    return {
        "op": "exec",
        "keep": keep,
        "limit": limit,
        "code": code,
        "compact": True,
        "keep_background": bool(flags & _KEEP_BACKGROUND),
    }


def exec_reply_bound(keep: int) -> int:
    """The most bytes of body a compact exec reply may carry for ``keep`` bytes a stream."""
    return 2 * (keep + _MARKER_BYTES)


def _encode_exec_reply(reply: dict[str, Any]) -> bytes:
    out: bytes = reply["stdout"]
    err: bytes = reply["stderr"]
    flags = (_STDOUT_TRUNCATED if reply["stdout_truncated"] else 0) | (
        _STDERR_TRUNCATED if reply["stderr_truncated"] else 0
    )
    peak = reply["peak_memory_bytes"]
    header = EXEC_REPLY.pack(
        _EXEC_REPLY_TAG,
        reply["exit_code"],
        EXIT_REASONS.index(reply["exit_reason"]),
        flags,
        reply["duration_s"],
        -1 if peak is None else peak,
        len(out),
    )
    return FRAME_PREFIX.pack(len(header), len(out) + len(err)) + header + out + err


def decode_exec_reply(header: bytes, body: bytes) -> dict[str, Any] | None:
    """The fields of a compact exec reply (as its JSON form has them), or None if ``header``
    is not one; ``ValueError`` if it is malformed."""
    if len(header) != EXEC_REPLY.size or header[0] != _EXEC_REPLY_TAG:
        return None
    _, code, reason, flags, duration, peak, out_len = EXEC_REPLY.unpack(header)
    if reason >= len(EXIT_REASONS) or out_len > len(body):
        raise ValueError(f"malformed exec reply (reason {reason}, stdout {out_len} B)")
    return {
        "ok": True,
        "exit_code": code,
        "exit_reason": EXIT_REASONS[reason],
        "stdout": body[:out_len].decode("utf-8", "replace"),
        "stderr": body[out_len:].decode("utf-8", "replace"),
        "stdout_truncated": bool(flags & _STDOUT_TRUNCATED),
        "stderr_truncated": bool(flags & _STDERR_TRUNCATED),
        "duration_s": duration,
        "peak_memory_bytes": None if peak < 0 else peak,
    }


def encode_output(stream: str, data: bytes) -> bytes:
    """An output frame of a streaming exec (``stream`` is ``stdout`` or ``stderr``)."""
    return encode_frame({"op": "output", "stream": stream}, data)


def encode_chunk(data: bytes) -> bytes:
    """A headerless frame: one piece of a stream."""
    return FRAME_PREFIX.pack(0, len(data)) + data


def encode_reply(reply: dict[str, Any], body: bytes, *, compact: bool) -> bytes:
    """A reply's frame: compact for a compact exec that did not end the session, else JSON
    (where an exec's output, kept as bytes, becomes text)."""
    if "stdout" in reply:
        if compact and "ended" not in reply and reply.get("ok"):
            return _encode_exec_reply(reply)
        for name in ("stdout", "stderr"):
            if isinstance(reply[name], bytes):
                reply[name] = reply[name].decode("utf-8", "replace")
    return encode_frame(reply, body)


class Receiver:
    """Frames from the host, read ahead into one buffer: a request is usually one ``recv``."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = self.sock.recv(max(size - len(self.buffer), _RECV_BYTES))
            if not chunk:
                raise EOFError("host closed the control socket")
            self.buffer += chunk

    def frame(self) -> tuple[dict[str, Any] | None, bytes]:
        """``(header, body)``; the header is None for a chunk."""
        self._fill(FRAME_PREFIX.size)
        header_len, body_len = FRAME_PREFIX.unpack_from(self.buffer)
        if header_len > MAX_HEADER_BYTES or body_len > max(CHUNK_BYTES, MAX_HEADER_BYTES):
            raise EOFError("oversized frame from host")
        end = FRAME_PREFIX.size + header_len + body_len
        self._fill(end)
        start = FRAME_PREFIX.size
        with memoryview(self.buffer) as view:  # released before the buffer shrinks
            body = bytes(view[start + header_len : end]) if body_len else b""
            raw = bytes(view[start : start + header_len])
        if not header_len:
            header = None
        elif raw[0] == _EXEC_REQUEST_TAG:
            header, body = _decode_exec_request(raw, body), b""
        else:
            header = json.loads(raw)
        del self.buffer[:end]
        return header, body


class ChunkReader:
    """The file-like end of a stream of chunks from the host (for ``tarfile`` mode ``r|``)."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.buffer = b""
        self.offset = 0
        self.end: dict[str, Any] | None = None  # the header that ended the stream

    def read(self, size: int = -1) -> bytes:
        while self.offset >= len(self.buffer) and self.end is None:
            header, body = self.receiver.frame()
            if header is None:
                self.buffer, self.offset = body, 0
            else:
                self.end = header
        start = self.offset
        self.offset = len(self.buffer) if size < 0 else min(len(self.buffer), start + size)
        return self.buffer[start : self.offset]

    def drain(self) -> dict[str, Any]:
        """Skip the rest of the stream; the header that ended it."""
        while self.end is None:
            self.offset = len(self.buffer)
            self.read(CHUNK_BYTES)
        return self.end


class ChunkWriter:
    """The start of a stream of chunks to the host: ``write`` collects, whole chunks leave."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= CHUNK_BYTES:
            view = memoryview(self.buffer)
            whole = len(view) - len(view) % CHUNK_BYTES
            for start in range(0, whole, CHUNK_BYTES):
                self.send(encode_chunk(bytes(view[start : start + CHUNK_BYTES])))
            view.release()
            del self.buffer[:whole]

    def flush(self) -> None:
        if self.buffer:
            self.send(encode_chunk(bytes(self.buffer)))
            self.buffer.clear()
