"""execloop's in-sandbox helper: runs code sent over a Unix socket and keeps its state.

It is the only execloop code that runs *inside* a sandbox, so it is one file that uses the
standard library only; the image builder copies it into images and the bubblewrap backend binds
it in. The host imports the framing, the tar checks and the manifest walk from here too, so both
sides share them.

Protocol: every frame is ``!IQ`` (header length, body length), a JSON header, then the body. A
frame without a header is a *chunk* of a stream (at most ``CHUNK_BYTES``); a stream ends with
the next header frame, so neither side ever holds a whole transfer in memory. The helper
connects to the host's listening socket, sends ``hello``, then serves one request at a time:

- ``exec`` (``code``, or ``path`` and ``args``): the reply holds an ``ExecResult``'s fields;
- ``put`` (``dest``, ``bytes``, ``files``): the helper checks the free space and replies
  ``go`` (or an error); the host streams a tar as chunks, ends with ``{"op": "end"}``, and
  the final reply follows;
- ``get`` (``path``): ``{"stream": true}``, the tar as chunks, then the final reply;
- ``manifest`` (``path``, ``limit``): totals in the header, the listing as a JSON body;
- with ``stream: true`` an ``exec`` sends *output frames* before its reply: a header
  ``{"op": "output", "stream": "stdout" | "stderr"}`` and the bytes as body (at most
  ``CHUNK_BYTES``), what the drain thread read at each poll, at most ``keep`` bytes a stream;
- ``ping``.

A reply carrying ``ended`` says the session cannot go on (the script called ``os._exit``, or
left no file descriptor or memory for the helper); the host then closes it with that reason.

The user's code runs in this process (that is what makes sessions stateful). Its output is
captured at the file-descriptor level (fds 1 and 2 are pipes drained by one thread started
here, so a pids limit reached by the user's code cannot stop the helper from answering), kept
as head + tail, and an exec that prints more than its hard limit is stopped. Everything the
helper reports is *untrusted* from the host's point of view: the user's code shares its process.
"""

from __future__ import annotations

# Only what serving needs is imported up front: the helper's start is part of every cold
# sandbox start. What an exec's reply needs is imported by a thread after the greeting (an
# import can fail once the user's code has used up the descriptors or the memory); the rest
# (tarfile, hashlib...) is imported when a request needs it.
import builtins
import contextlib
import errno
import fcntl
import json
import mmap
import os
import signal
import socket
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import tarfile
    from collections.abc import Iterator
    from pathlib import PurePosixPath

__all__ = [
    "CHUNK_BYTES",
    "FRAME_PREFIX",
    "MANIFEST_ENTRY_BUDGET",
    "MAX_HEADER_BYTES",
    "ManifestBuilder",
    "TarRefusedError",
    "check_tar_member",
    "EXEC_REPLY",
    "EXEC_REQUEST",
    "EXIT_REASONS",
    "decode_exec_reply",
    "encode_chunk",
    "encode_exec_request",
    "encode_frame",
    "encode_output",
    "exec_reply_bound",
    "main",
    "manifest_body_bound",
    "python_exit_status",
    "walk_files",
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
# A manifest's listing may take this many bytes of JSON per listed file on average (a sha256,
# a size and a path of several hundred characters); past it, files are counted, not listed.
MANIFEST_ENTRY_BUDGET = 1024
_PIPE_CHUNK = 1 << 14  # per read of the output pipes: a buffer kept for good, so small
# 5 ms of output at 50 MB/s; pipe pages count against a per-user quota (pipe-user-pages-soft,
# 64 MiB) that every sandbox of the same uid shares, so no more than that
_PIPE_BYTES = 1 << 18
_DRAIN_POLL_S = 0.005  # while the user's code runs (the output limit is checked as often)
_DRAIN_IDLE_S = 0.05  # between execs: only background processes write
_DRAIN_BUSY_READS = 4  # reads in one round that mean output is pouring in
_THREAD_STACK_BYTES = 4 << 20  # half the default: the helper's threads run shallow code
_RECV_BYTES = 1 << 12  # read-ahead of the control socket: a whole request, usually
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_RESERVE_BYTES = 4 << 20  # freed to report a MemoryError in the helper's own work
_HEADROOM_BYTES = 2 * CHUNK_BYTES  # private memory a transfer needs after an exec; less ends it
_real_exit = os._exit


class TarRefusedError(ValueError):
    """A tar entry that could escape the destination or is not a plain file or directory."""


class _NoSpaceError(Exception):
    """An upload that cannot fit in the workspace."""


def check_tar_member(member: tarfile.TarInfo) -> PurePosixPath:
    """Return the member's safe relative path, or raise ``TarRefusedError`` saying why."""
    from pathlib import PurePosixPath

    name = member.name
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith(("/", "\\")):
        raise TarRefusedError(f"tar entry {name!r}: absolute paths are refused")
    if ".." in path.parts:
        raise TarRefusedError(f"tar entry {name!r}: '..' components are refused (path traversal)")
    if not (member.isfile() or member.isdir()):
        raise TarRefusedError(
            f"tar entry {name!r}: only regular files and directories are transferred "
            "(links, devices and fifos are refused)"
        )
    return path


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


def python_exit_status(code: object) -> tuple[int, str]:
    """``(exit status, text for stderr)`` of ``SystemExit(code)`` as ``python script.py`` ends:
    None is 0, an int is what the OS keeps of it (its low byte; 255 past a C long), anything
    else is printed and gives 1."""
    if code is None:
        return 0, ""
    if isinstance(code, int):
        return (code & 0xFF if -(1 << 63) <= code < 1 << 63 else 255), ""
    try:
        text = str(code)
    except Exception:
        text = object.__repr__(code)
    return 1, text + "\n"


# -- manifests: shared by the helper and the host's workspace (links are never followed) ------
def _sorted_listing(dir_fd: int) -> list[tuple[str, bool]]:
    """``(name, is a folder)`` of a folder's entries, sorted so that a walk yields paths in
    string order: a folder sorts as ``name/``, as every path below it begins."""
    with os.scandir(dir_fd) as entries:
        listing = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    listing.sort(key=lambda item: item[0] + "/" if item[1] else item[0])
    return listing


def walk_files(top_fd: int, *, folders: bool = False) -> Iterator[tuple[str, int, str, bool]]:
    """``(path relative to top, parent folder fd, name, is a folder)`` of every entry under the
    folder ``top_fd`` (folders only if ``folders``), in path order, never through a link. A
    parent fd is valid until the next item. A folder that vanishes or becomes a link meanwhile
    is skipped."""
    stack = [("", os.dup(top_fd), iter(_sorted_listing(top_fd)))]
    try:
        while stack:
            prefix, fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                os.close(fd)
                continue
            name, is_dir = entry
            if not is_dir:
                yield prefix + name, fd, name, False
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
                    continue
                raise
            if folders:
                yield prefix + name, fd, name, True
            stack.append((f"{prefix}{name}/", child, iter(_sorted_listing(child))))
    finally:
        for _, fd, _ in stack:
            os.close(fd)


def manifest_body_bound(limit: int) -> int:
    """The most bytes a manifest's JSON listing of ``limit`` files may take."""
    return 2 + limit * (MANIFEST_ENTRY_BUDGET + 1)


class ManifestBuilder:
    """Counts every regular file it is shown; lists (and hashes) the first ``limit`` of them,
    within ``manifest_body_bound(limit)`` bytes of JSON."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.files: list[dict[str, Any]] = []
        self.total_files = 0
        self.total_bytes = 0
        self._budget = manifest_body_bound(limit) - 2

    def add(self, path: str, dir_fd: int, name: str) -> None:
        """Count ``name`` in ``dir_fd`` if it is a regular file (a link is never followed)."""
        import stat

        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:  # removed meanwhile
            return
        if not stat.S_ISREG(info.st_mode):
            return
        self.total_files += 1
        self.total_bytes += info.st_size
        if len(self.files) >= self.limit:
            return
        # the keys, a sha256, a 20-digit size and a comma around the path
        cost = len(json.dumps(path)) + 120
        if cost > self._budget:
            return
        listed = self._hashed(path, dir_fd, name)
        if listed is not None:
            self._budget -= cost
            self.files.append(listed)

    @staticmethod
    def _hashed(path: str, dir_fd: int, name: str) -> dict[str, Any] | None:
        import hashlib
        import stat

        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # swapped for something else meanwhile
                return None
            digest = hashlib.sha256()
            size = 0
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return {"path": path, "size_bytes": size, "sha256": digest.hexdigest()}

    def add_tree(self, top_fd: int, prefix: str) -> None:
        """Every file under the folder ``top_fd``, named ``prefix + its relative path``."""
        for path, dir_fd, name, _ in walk_files(top_fd):
            self.add(prefix + path, dir_fd, name)

    def reply(self) -> tuple[dict[str, Any], bytes]:
        """The protocol's reply: totals in the header, the listing as the JSON body."""
        totals = {"total_files": self.total_files, "total_bytes": self.total_bytes}
        return totals, json.dumps(self.files, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Everything below runs inside the sandbox.


class _Receiver:
    """Frames from the host, read ahead into one buffer: a request is usually one ``recv``."""

    def __init__(self, sock: socket.socket) -> None:
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


class _ChunkReader:
    """The file-like end of a stream of chunks from the host (for ``tarfile`` mode ``r|``)."""

    def __init__(self, receiver: _Receiver) -> None:
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


class _ChunkWriter:
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


class _Bounded:
    """Keeps the first and last ``keep // 2`` bytes of a stream and counts the rest."""

    def __init__(self, keep: int) -> None:
        self.head_cap = keep - keep // 2
        self.tail_cap = keep // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes | memoryview) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data[-self.tail_cap :]
            if len(self.tail) > 2 * self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.head_cap + self.tail_cap

    def raw(self) -> bytes:
        """What is kept, with a marker where bytes were omitted (not decoded yet)."""
        if not self.truncated:
            return bytes(self.head + self.tail)
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        omitted = self.total - len(self.head) - len(tail)
        marker = f"\n[... execloop: {omitted} bytes omitted ...]\n".encode()
        return bytes(self.head) + marker + tail

    def text(self) -> str:
        return self.raw().decode("utf-8", "replace")


class _OutputLimitExceededError(BaseException):
    """Raised in the user's code when it has printed more than the exec's hard limit."""


class _Capture:
    """fds 1 and 2 become pipes for the helper's lifetime. When the user's code is done, the
    main thread reads what is left itself; a thread drains them meanwhile, but by polling
    every few milliseconds rather than waking on each write: a thread woken by ``print``
    takes the GIL, and on a busy machine the main thread then waits a scheduler slice for it
    back. The pipes are enlarged so that a poll's worth of output fits. Reading and keeping
    happen under one lock, so whatever was written before ``finish`` is kept once it returns."""

    def __init__(self) -> None:
        self._out_r, out_w = os.pipe()
        self._err_r, err_w = os.pipe()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        for fd in (self._out_r, self._err_r):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # past the system's limit it keeps its size
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._lock = threading.Lock()
        self._scratch = bytearray(_PIPE_CHUNK)  # what each read lands in (under the lock)
        self._main = threading.main_thread().ident
        self.armed = False  # True while the user's code runs: only then may the limit fire
        # A streaming exec's output not yet sent (at most ``keep`` bytes a stream in all), and
        # the lock that keeps frames in order between the drain thread and the main thread.
        self._send: Any = None
        self._pending = {"stdout": bytearray(), "stderr": bytearray()}
        self._left = {"stdout": 0, "stderr": 0}
        self._stream_lock = threading.Lock()
        self.begin(keep=1024, limit=1 << 62)
        self._thread = _start_thread(self._drain, "execloop-drain")

    def begin(self, *, keep: int, limit: int, send: Any = None) -> None:
        """A new exec; ``send`` (a frame sender) streams its output as output frames."""
        with self._lock:
            self._send = send
            self._left = {"stdout": keep, "stderr": keep} if send is not None else self._left
            self.out = _Bounded(keep)
            self.err = _Bounded(keep)
            self.limit = limit
            self.limit_hit = False
            self.lost = False  # output dropped because the helper had no memory for it

    def finish(self) -> bool:
        """Read everything written so far to fds 1 and 2; False if that cannot be vouched for
        (the user's code broke the pipes, or the drain thread, which the next exec needs)."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # the user may have closed or replaced it
                stream.flush()
        if not self._thread.is_alive():
            return False
        try:
            while self._read(self._out_r, "out") | self._read(self._err_r, "err"):
                pass
        except OSError:
            return False
        return True

    def _read(self, fd: int, which: str) -> bool:
        # Into a buffer allocated once: the main thread may read with no memory left to
        # allocate (a script that filled its address space), and its output is still kept.
        with self._lock:
            try:
                size = os.readv(fd, [self._scratch])
            except BlockingIOError:
                return False
            if not size:
                return False
            try:
                view = memoryview(self._scratch)[:size]
                (self.out if which == "out" else self.err).add(view)
                if self._send is not None:
                    name = "stdout" if which == "out" else "stderr"
                    left = self._left[name]
                    if left > 0:
                        self._pending[name] += view[:left]
                        self._left[name] = left - min(left, size)
            except MemoryError:
                self.lost = True
            if not self.limit_hit and self.out.total + self.err.total > self.limit:
                self.limit_hit = True
                if self.armed and self._main is not None:
                    signal.pthread_kill(self._main, signal.SIGUSR1)
        return True

    def flush_stream(self, *, last: bool = False) -> None:
        """Send the output read so far as output frames; ``last`` ends the exec's streaming.
        A send that fails stops streaming: the reply (or the host's deadline) says the rest."""
        with self._stream_lock:
            with self._lock:
                send = self._send
                if last:
                    self._send = None
                if send is None:
                    return
                pieces = [(name, bytes(data)) for name, data in self._pending.items() if data]
                for buffer in self._pending.values():
                    buffer.clear()
            try:
                for name, data in pieces:
                    for start in range(0, len(data), CHUNK_BYTES):
                        send(encode_output(name, data[start : start + CHUNK_BYTES]))
            except OSError:
                with self._lock:
                    self._send = None

    def _drain(self) -> None:
        busy = False
        while True:
            if not busy:  # a round that found plenty goes again at once
                time.sleep(_DRAIN_POLL_S if self.armed else _DRAIN_IDLE_S)
            try:
                rounds = 0
                while self._read(self._out_r, "out") | self._read(self._err_r, "err"):
                    rounds += 1
                busy = rounds >= _DRAIN_BUSY_READS
                if rounds and self._send is not None:
                    self.flush_stream()
            except OSError:  # the user's code closed our pipes: finish() will say so
                return
            except MemoryError:
                self.lost = True
                busy = False


_counter_fds: dict[str, tuple[int, int, int]] = {}  # path: (fd, st_dev, st_ino)
_absent: set[str] = set()


def _read_counter(path: str, size: int = 4096) -> bytes | None:
    """A cgroup file's text: one ``pread`` on a descriptor kept open, since opening the files
    cost more than the rest of an exec's bookkeeping. The user's code may close or reuse
    the descriptor, so its identity is checked first (and a stray one is left alone)."""
    known = _counter_fds.get(path)
    if known is not None:
        fd, dev, ino = known
        with contextlib.suppress(OSError):
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) == (dev, ino):
                return os.pread(fd, size, 0)  # offset 0 makes the kernel render it anew
        del _counter_fds[path]
    if path in _absent:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        _absent.add(path)  # cgroup files do not appear later
        return None
    except OSError:
        return None
    info = os.fstat(fd)
    _counter_fds[path] = (fd, info.st_dev, info.st_ino)
    return os.pread(fd, size, 0)


def _cgroup_value(*candidates: str, key: str | None = None) -> int | None:
    for candidate in candidates:
        try:
            text = _read_counter(candidate)
        except OSError:
            continue
        if text is None:
            continue
        if key is None:
            value = text.split()[0] if text.strip() else b""
            return int(value) if value.isdigit() else None
        for line in text.splitlines():
            name, _, value = line.partition(b" ")
            if name == key.encode():
                return int(value) if value.strip().isdigit() else None
    return None


def _oom_kills() -> int | None:
    return _cgroup_value(
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
        key="oom_kill",
    )


def _peak_memory(use_cgroup: bool = True) -> int | None:
    peak = None
    if use_cgroup:
        peak = _cgroup_value(
            "/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"
        )
    if peak is None:  # no cgroup view (bubblewrap): this process and its children, in KiB
        import resource

        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak = max(self_rss, child_rss) * 1024
    return peak


def _memory_headroom() -> int | None:
    """Bytes the sandbox's memory cgroup still allows, if it has a limit."""
    limit = _cgroup_value(
        "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    usage = _cgroup_value(
        "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"
    )
    if limit is None or usage is None or limit >= 1 << 60:
        return None
    return max(0, limit - usage)


def _on_tmpfs(path: str) -> bool:
    """Whether ``path`` lies on a tmpfs (whose pages count as the sandbox's memory)."""
    best, fstype = "", ""
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields, _, tail = line.partition(" - ")
            mount_point = fields.split()[4]
            inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, fstype = mount_point, tail.split()[0]
    return fstype == "tmpfs"


def _traced() -> bool:
    """Whether a tracer is attached to this process (``TracerPid`` in its status: one
    ``pread`` of a descriptor kept open)."""
    try:
        status = _read_counter("/proc/self/status", size=1 << 14) or b""
    except OSError:
        return False
    start = status.find(b"TracerPid:")
    return start >= 0 and status[start + 10 : status.find(b"\n", start)].strip() != b"0"


class _NativeCode:
    """Whether the user's code could have called into C (``ptrace`` wants that): ``ctypes``,
    ``cffi`` or an extension module from outside the standard library was imported. Sticky,
    and looked into only when ``sys.modules`` changed, so that a plain exec costs nothing."""

    _BRIDGES = ("_ctypes", "_cffi_backend")

    def __init__(self) -> None:
        self.known = set(sys.modules)
        self.found = False
        self._stdlib = os.path.dirname(os.__file__)

    def seen(self) -> bool:
        if self.found or len(sys.modules) == len(self.known):
            return self.found
        for name in set(sys.modules) - self.known:
            where = getattr(sys.modules.get(name), "__file__", None) or ""
            native = where.endswith((".so", ".pyd")) and not where.startswith(self._stdlib)
            if native or name in self._BRIDGES:
                self.found = True
        self.known = set(sys.modules)
        return self.found


def _only_helper_left() -> bool:
    """Whether the sandbox's PID namespace surely holds nothing but its init and the helper:
    its pids cgroup counts one task per thread, and the link count of the helper's task folder
    is 2 + its threads. Two cheap reads instead of a scan of /proc after every exec; without
    a pids counter (bubblewrap) the answer is False, and the caller scans."""
    tasks = _cgroup_value("/sys/fs/cgroup/pids.current", "/sys/fs/cgroup/pids/pids.current")
    if tasks is None:
        return False
    return tasks == 1 + os.stat("/proc/self/task").st_nlink - 2


def _human(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def _kill_other_processes(me: int) -> None:
    """Stop then kill every process in this PID namespace except init and the helper.

    Stopping first keeps a fork bomb from refilling the slots that the kills free.
    """
    for _ in range(100):
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in (1, me):
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        state = handle.read().rsplit(")", 1)[1].split()[0]
                except (OSError, IndexError):
                    continue
                if state not in ("Z", "X"):
                    pids.append(int(entry))
        if not pids:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):  # already gone
                    os.kill(pid, sig)
        time.sleep(0.002)
    while True:  # reap the helper's own children
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


def _start_thread(target: Any, name: str) -> threading.Thread:
    """A helper thread on a small stack: a thread's stack is private writable memory, which
    RLIMIT_DATA counts, and the default (8 MiB, kept cached after the thread ends) would be
    taken from the user's memory limit. The user's own threads keep the default."""
    default = threading.stack_size(_THREAD_STACK_BYTES)
    try:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
    finally:
        threading.stack_size(default)
    return thread


def _preload() -> None:
    """Import what an exec's reply needs while imports still work (see the imports above)."""
    with contextlib.suppress(Exception):
        import linecache
        import resource
        import tokenize
        import traceback

        del linecache, resource, tokenize, traceback


class _Session:
    # False where the helper shares the host's cgroup (restricted backend): its counters are
    # the host's, not the sandbox's.
    use_cgroup = True

    def __init__(self, sock: socket.socket, workspace: str, reap_all: bool) -> None:
        self.sock = sock
        self.receiver = _Receiver(sock)
        self.workspace = workspace
        self.reap_all = reap_all
        self.pid = os.getpid()
        self.capture = _Capture()
        self.native = _NativeCode()
        self.threads = threading.active_count()  # the helper's own (the preload one ends)
        self.namespace = self.new_namespace(__name__="__main__")
        self.counter = 0
        self.memory_error = False
        self.started: float | None = None  # while an exec runs: when it began
        self._oom_before: int | None = None
        # The OOM-kill count read at the end of an exec that left no other process and no thread
        # of the user's: nothing can be OOM-killed before the next exec but the helper (which
        # ends the session), so that exec need not read it again.
        self._oom_settled: int | None = None
        self._oom_after: int | None = None
        self._send_lock = threading.Lock()
        self._reserve: bytearray | None = bytearray(_RESERVE_BYTES)
        signal.signal(signal.SIGUSR1, self._on_output_limit)
        os._exit = self._os_exit  # type: ignore[assignment]  # status and output are kept
        with contextlib.suppress(ImportError):
            import posix

            posix._exit = self._os_exit  # type: ignore[assignment]

    def _on_output_limit(self, signum: int, frame: object) -> None:
        if self.capture.armed:
            raise _OutputLimitExceededError

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(data)

    # -- seams: how code is compiled and which globals it sees (the restricted runner's) -----
    def compile_source(self, source: str | bytes, filename: str) -> Any:
        """``source`` is bytes for a file: compiled like Python runs one (PEP 263 cookie)."""
        return compile(source, filename, "exec")

    def new_namespace(self, **names: Any) -> dict[str, Any]:
        return {"__builtins__": builtins, **names}

    # -- requests ----------------------------------------------------------------------------
    def serve(self) -> None:
        self._send(encode_frame({"op": "hello", "pid": self.pid, "python": sys.version}))
        with contextlib.suppress(RuntimeError):  # no thread to spare: imports happen inline
            _start_thread(_preload, "execloop-preload")
        while True:
            try:
                header, body = self.receiver.frame()
            except EOFError:
                return
            if header is None:  # a chunk of a stream this helper already gave up on
                continue
            try:
                handler = getattr(self, f"op_{header.get('op')}")
                reply, reply_body = handler(header, body)
                reply["ok"] = True
            except EOFError:  # the host went away mid-stream
                return
            except Exception as exc:  # reported to the host, which raises its own error
                reply, reply_body = self._failure(exc), b""
            self._send(_encode_reply(reply, reply_body, compact=header.get("compact", False)))

    def _failure(self, exc: BaseException) -> dict[str, Any]:
        plain = isinstance(exc, (TarRefusedError, _NoSpaceError))
        error = str(exc) if plain else f"{type(exc).__name__}: {exc}"
        reply: dict[str, Any] = {"ok": False, "error": error}
        if isinstance(exc, MemoryError):
            self._reserve = None
            reply.update(ended="the script left the helper no memory", exit_reason="oom")
        elif isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            reply["ended"] = "the script used up the file descriptors"
        return reply

    def op_ping(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        return {}, b""

    def op_warm(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """An exec of ``pass`` that leaves no trace (no count, no output), before any user code
        ran: the first real exec then finds everything opened, imported and paged in."""
        warm = {"code": "pass", "keep": 1024, "limit": 1 << 20, "keep_background": True}
        reply, _ = self.op_exec(warm, b"")
        self.counter -= 1
        return {"ended": reply["ended"]} if "ended" in reply else {}, b""

    def op_exec(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        self.counter += 1
        settled, self._oom_settled = self._oom_settled, None
        if settled is not None:
            self._oom_before = settled
        else:
            self._oom_before = _oom_kills() if self.use_cgroup else None
        send = self._send if header.get("stream") else None
        self.capture.begin(keep=int(header["keep"]), limit=int(header["limit"]), send=send)
        self.started = time.monotonic()
        exit_code = self._run_user_code(header)
        try:
            alone = False
            if self.reap_all and not header.get("keep_background", False):
                with contextlib.suppress(OSError):  # no descriptor left: the host kills all
                    if not _only_helper_left():
                        _kill_other_processes(self.pid)
                    alone = True
            reply = self._exec_reply(exit_code)
            if alone and "ended" not in reply and threading.active_count() <= self.threads:
                self._oom_settled = self._oom_after
            return reply, b""
        except BaseException as exc:  # the helper's own work failed after the script
            return self._emergency_reply(exit_code, exc), b""
        finally:
            self.started = None

    def _exec_reply(self, exit_code: int, *, ended: str | None = None) -> dict[str, Any]:
        """The reply of the exec in progress; ``ended`` if the script ended the session."""
        assert self.started is not None
        flushed = self.capture.finish()
        self.capture.flush_stream(last=True)  # every output frame goes before the reply
        duration = time.monotonic() - self.started
        oom_after = self._oom_after = _oom_kills() if self.use_cgroup else None
        if self.capture.limit_hit:
            reason = "output_limit"
        elif self.memory_error or (
            self._oom_before is not None and oom_after is not None and oom_after > self._oom_before
        ):
            reason = "oom"
        else:
            reason = "ok" if exit_code == 0 else "error"
        if ended is None:
            trouble = self._health(flushed)
            if trouble is not None:
                reason, ended = trouble
                exit_code = exit_code or 1
                self.capture.err.add(f"\nexecloop: {ended}; the session was closed\n".encode())
        if self.capture.lost:
            self.capture.err.add(b"\nexecloop: some output was lost (no memory to keep it)\n")
        out, err = self.capture.out, self.capture.err
        reply = {
            "exit_code": exit_code,
            "exit_reason": reason,
            "stdout": out.raw(),  # bytes: _encode_reply decodes them for a JSON reply
            "stderr": err.raw(),
            "stdout_truncated": out.truncated,
            "stderr_truncated": err.truncated,
            "duration_s": duration,
            "peak_memory_bytes": _peak_memory(self.use_cgroup),
        }
        if ended is not None:
            reply["ended"] = ended
        return reply

    def _health(self, flushed: bool) -> tuple[str, str] | None:
        """``(exit reason, why)`` if the script left the helper unable to serve on."""
        if not flushed:
            return "error", "the script broke the helper's output capture"
        try:
            os.close(os.dup(self.sock.fileno()))
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return "error", "the script used up the file descriptors (EMFILE)"
            return "error", f"the helper lost its control socket ({exc.strerror})"
        try:  # address space, not a free-list chunk: what the helper's next requests map
            mmap.mmap(-1, _HEADROOM_BYTES, flags=mmap.MAP_PRIVATE).close()  # as RLIMIT_DATA counts
        except (OSError, MemoryError):
            return "oom", "the script left the helper no memory (threads or data fill it)"
        # PTRACE_TRACEME: the sandbox's init would freeze the helper at its next signal
        if self.native.seen() and _traced():
            return "error", "the script had the helper traced (PTRACE_TRACEME)"
        return None

    def _emergency_reply(self, exit_code: int, exc: BaseException) -> dict[str, Any]:
        """A reply built with as little memory as possible, once the usual one failed."""
        self._reserve = None
        with contextlib.suppress(BaseException):  # no output frame may follow the reply
            self.capture.flush_stream(last=True)
        memory = isinstance(exc, MemoryError)
        why = "no memory" if memory else f"{type(exc).__name__}"
        stdout = stderr = ""
        with contextlib.suppress(BaseException):
            stdout, stderr = self.capture.out.text(), self.capture.err.text()
        ended = f"the helper failed after the script ran ({why})"
        return {
            "exit_code": exit_code or 1,
            "exit_reason": "oom" if memory else "error",
            "stdout": stdout,
            "stderr": f"{stderr}\nexecloop: {ended}; the session was closed\n",
            "duration_s": time.monotonic() - (self.started or time.monotonic()),
            "ended": ended,
        }

    def _os_exit(self, status: int, /) -> NoReturn:
        """``os._exit`` for the user's code: the exec's reply (its output, this status) goes
        to the host first, then the process really exits."""
        code = status.__index__()
        if not -(1 << 31) <= code < 1 << 31:
            raise OverflowError("Python int too large to convert to C int")
        if os.getpid() != self.pid:  # a forked child leaving
            _real_exit(code)
        self.capture.armed = False
        try:
            why = f"the script called os._exit({code})"
            if self.started is not None:
                reply = self._exec_reply(code & 0xFF, ended=why)
            else:  # from a thread between requests: ends whatever the host asks next
                reply = {"exit_code": code & 0xFF, "exit_reason": "error", "duration_s": 0}
                reply.update(stderr=f"execloop: {why} between execs\n", ended=why)
            self._send(_encode_reply({**reply, "ok": True}, b"", compact=False))
        finally:
            _real_exit(code)

    def _run_user_code(self, header: dict[str, Any]) -> int:
        self.memory_error = False  # an allocation refused by a limit (rlimit, cgroup) is OOM
        path = header.get("path")
        saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else ""
        try:
            source: str | bytes
            if path is not None:
                filename = self._inside(path)
                with open(filename, "rb") as handle:
                    source = handle.read()
                sys.argv = [filename, *header.get("args", [])]
                sys.path[0] = os.path.dirname(filename)
                namespace = self.new_namespace(__name__="__main__", __file__=filename)
            else:
                source = header["code"]
                filename = f"<exec-{self.counter}>"
                namespace = self.namespace
            compiled = self.compile_source(source, filename)
            _remember_source(filename, source)
        except Exception as exc:  # SyntaxError, a missing file, no memory to compile...
            self.memory_error = isinstance(exc, MemoryError)
            _print_exception(exc, limit=0)
            return 1
        code = 0
        self.capture.armed = True
        try:
            exec(compiled, namespace)
        except SystemExit as exc:
            self.capture.armed = False
            code, message = python_exit_status(exc.code)
            with contextlib.suppress(Exception):
                sys.stderr.write(message)
        except _OutputLimitExceededError:
            code = 1
        except BaseException as exc:  # report it like Python would, without our frame
            self.capture.armed = False
            self.memory_error = isinstance(exc, MemoryError)
            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            _print_exception(exc, tb=tb)
            code = 1
        finally:
            self.capture.armed = False
            if os.getpid() != self.pid:  # a forked child left the user's code: never serve
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                _real_exit(code)
            sys.argv = saved_argv
            if sys.path:
                sys.path[0] = saved_path0
        if path is not None:  # like IPython's %run: the script's globals join the session
            self.namespace.update({k: v for k, v in namespace.items() if not k.startswith("__")})
        return code

    def _inside(self, relative: str) -> str:
        target = os.path.realpath(os.path.join(self.workspace, relative))
        if target != self.workspace and not target.startswith(self.workspace + os.sep):
            raise TarRefusedError(f"{relative!r} is outside the workspace")
        return target

    # -- files --------------------------------------------------------------------------------
    def op_put(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        dest = self._inside(header.get("dest", "."))
        self._check_space(int(header.get("bytes", 0)), int(header.get("files", 0)))
        self._send(encode_frame({"ok": True, "go": True}))
        reader = _ChunkReader(self.receiver)
        created: list[str] = []
        try:
            files = self._extract(reader, dest, created)
        except BaseException:
            for target in reversed(created):  # no half-written upload stays behind
                with contextlib.suppress(OSError):
                    os.unlink(target)
            reader.drain()
            raise
        end = reader.drain()
        if end.get("abort"):
            for target in reversed(created):
                with contextlib.suppress(OSError):
                    os.unlink(target)
            raise ValueError(f"the host gave up the upload: {end['abort']}")
        return {"files": files}, b""

    def _check_space(self, size: int, files: int) -> None:
        info = os.statvfs(self.workspace)
        free = info.f_bavail * info.f_frsize
        needed = size + files * info.f_frsize  # each file's last block, at worst
        where, fix = "the workspace has", "workspace_size"
        headroom = _memory_headroom() if self.use_cgroup and _on_tmpfs(self.workspace) else None
        if headroom is not None and headroom < free:  # a tmpfs's pages are the sandbox's memory
            free, where, fix = (
                headroom,
                "the sandbox's memory (its workspace is a tmpfs) has",
                "memory",
            )
        if needed > free:
            raise _NoSpaceError(
                f"the upload needs {_human(needed)} ({files} files) but {where} "
                f"{_human(free)} free; raise {fix} in the sandbox spec"
            )

    def _extract(self, reader: _ChunkReader, dest: str, created: list[str]) -> int:
        import tarfile

        files = 0
        stream: Any = reader  # file-like enough for tarfile's stream mode
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                check_tar_member(member)
                target = self._inside(os.path.join(dest, member.name))
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                if not os.path.lexists(target):
                    created.append(target)
                with open(target, "wb") as handle:
                    while chunk := source.read(CHUNK_BYTES):
                        handle.write(chunk)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
                files += 1
        return files

    def op_get(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._inside(header["path"])
        if not os.path.lexists(root):
            raise FileNotFoundError(f"{os.path.relpath(root, self.workspace)} does not exist")
        folder = os.path.isdir(root)
        top = os.open(root if folder else os.path.dirname(root), _DIR_FLAGS)
        self._send(encode_frame({"ok": True, "stream": True}))
        writer = _ChunkWriter(self._send)
        files = 0
        try:
            if folder:
                entries = walk_files(top)
            else:
                entries = iter([(os.path.basename(root), top, os.path.basename(root), False)])
            for arcname, dir_fd, name, _ in entries:
                files += _write_member(writer, arcname, dir_fd, name)
            writer.write(bytes(2 * 512))  # the end-of-archive marker
            writer.flush()
        finally:
            os.close(top)
        return {"files": files}, b""

    def op_manifest(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._inside(header.get("path", "."))
        builder = ManifestBuilder(int(header["limit"]))
        relative = os.path.relpath(root, self.workspace)
        if os.path.isdir(root):
            fd = os.open(root, _DIR_FLAGS)
            try:
                builder.add_tree(fd, "" if root == self.workspace else relative + "/")
            finally:
                os.close(fd)
        elif os.path.lexists(root):
            fd = os.open(os.path.dirname(root), _DIR_FLAGS)
            try:
                builder.add(relative, fd, os.path.basename(root))
            finally:
                os.close(fd)
        else:
            raise FileNotFoundError(f"{relative} does not exist")
        return builder.reply()


def _encode_reply(reply: dict[str, Any], body: bytes, *, compact: bool) -> bytes:
    """A reply's frame: compact for a compact exec that did not end the session, else JSON
    (where an exec's output, kept as bytes, becomes text)."""
    if "stdout" in reply:
        if compact and "ended" not in reply and reply.get("ok"):
            return _encode_exec_reply(reply)
        for name in ("stdout", "stderr"):
            if isinstance(reply[name], bytes):
                reply[name] = reply[name].decode("utf-8", "replace")
    return encode_frame(reply, body)


def _write_member(writer: _ChunkWriter, arcname: str, dir_fd: int, name: str) -> int:
    """Write ``name`` as a tar member (header, data, padding) if it is a regular file reached
    without a link; 1 if it was written."""
    import stat
    import tarfile

    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:  # a link (ELOOP), a socket or a file removed meanwhile is not sent
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return 0
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return 0
        member = tarfile.TarInfo(arcname)
        member.size = info.st_size
        member.mode = 0o755 if info.st_mode & 0o111 else 0o644
        member.mtime = int(info.st_mtime)
        writer.write(member.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
        left = info.st_size
        while left:
            chunk = handle.read(min(left, CHUNK_BYTES))
            if not chunk:
                raise OSError(errno.EIO, f"{arcname} shrank while it was read")
            writer.write(chunk)
            left -= len(chunk)
        writer.write(bytes(-info.st_size % 512))
    return 1


# Sources kept for tracebacks: the newest execs' (a function defined by an older exec then
# shows no source lines), so a long session does not grow without bound.
_KEPT_SOURCES_MAX = 256
_KEPT_SOURCE_CHARS_MAX = 16 * 2**20
_kept_sources: list[tuple[str, int]] = []
_kept_chars = [0]  # their total length, kept as they come and go (no sum per exec)


def _remember_source(filename: str, source: str | bytes) -> None:
    """Put the source in ``linecache`` so that tracebacks show its lines."""
    import linecache

    if isinstance(source, bytes):
        import io
        import tokenize

        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
            source = source.decode(encoding)
        except (SyntaxError, UnicodeDecodeError, LookupError):
            return
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    _kept_sources.append((filename, len(source)))
    _kept_chars[0] += len(source)
    while len(_kept_sources) > _KEPT_SOURCES_MAX or (
        _kept_chars[0] > _KEPT_SOURCE_CHARS_MAX and len(_kept_sources) > 1
    ):
        oldest, size = _kept_sources.pop(0)
        _kept_chars[0] -= size
        linecache.cache.pop(oldest, None)


def _print_exception(exc: BaseException, *, tb: Any = None, limit: int | None = None) -> None:
    """Print ``exc`` as Python would; a bare line if even that fails (no memory, no import)."""
    try:
        import traceback

        traceback.print_exception(type(exc), exc, tb if limit is None else None, limit=limit)
    except BaseException:
        with contextlib.suppress(BaseException):
            os.write(2, f"{type(exc).__name__}: {exc}\n".encode(errors="replace"))


# The initial PID namespace's inode number is fixed by the kernel (PROC_PID_INIT_INO).
_INIT_PID_NAMESPACE = 0xEFFFFFFC


def private_pid_namespace_problem() -> str | None:
    """Why ``--reap-all`` must not run here, or None inside a sandbox's own PID namespace.

    ``--reap-all`` kills every process but PID 1 and the helper after each exec. That is the
    sandbox's cleanup only where the helper is the child of the namespace's init (docker-init,
    bwrap); run by hand on a host it would kill the host's processes.
    """
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError as exc:
        return f"cannot read /proc/self/ns/pid ({exc.strerror})"
    if namespace == _INIT_PID_NAMESPACE:
        return "this is the host's initial PID namespace"
    if os.getppid() != 1:
        return f"the helper's parent is pid {os.getppid()}, not the namespace's init"
    return None


def main(argv: list[str] | None = None, *, session_class: type[_Session] = _Session) -> None:
    """``helper.py SOCKET [--workspace DIR] [--session ID] [--reap-all]`` (no argparse: it
    would slow every start)."""
    args = list(sys.argv[1:] if argv is None else argv)
    reap_all = "--reap-all" in args
    if reap_all:  # kill every other process after each exec: only in a private PID namespace
        args.remove("--reap-all")
        problem = private_pid_namespace_problem()
        if problem is not None:
            sys.exit(f"helper.py: refusing --reap-all (it kills every other process): {problem}")
    options = {"--workspace": os.getcwd(), "--session": ""}
    for flag in options:  # --session only marks the command line, so leaks can be found
        if flag in args:
            index = args.index(flag)
            options[flag] = args[index + 1]
            del args[index : index + 2]
    workspace = options["--workspace"]
    if len(args) != 1:
        sys.exit("usage: helper.py SOCKET [--workspace DIR] [--session ID] [--reap-all]")
    workspace = os.path.realpath(workspace)
    os.chdir(workspace)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args[0])
    session_class(sock, workspace, reap_all).serve()


if __name__ == "__main__":
    main()
