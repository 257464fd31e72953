"""Output capture inside the sandbox: fds 1 and 2 become pipes, kept as head + tail per exec,
with a hard limit that stops an exec printing too much."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
import time

from .framing import CHUNK_BYTES, encode_output

TYPE_CHECKING = False  # not typing's: importing typing costs every start 4 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["OutputLimitExceededError", "_Bounded", "_Capture", "start_thread"]

_PIPE_CHUNK = 1 << 14  # per read of the output pipes: a buffer kept for good, so small
# 5 ms of output at 50 MB/s; pipe pages count against a per-user quota (pipe-user-pages-soft,
# 64 MiB) that every sandbox of the same uid shares, so no more than that
_PIPE_BYTES = 1 << 18
_DRAIN_POLL_S = 0.005  # while the user's code runs (the output limit is checked as often)
_DRAIN_IDLE_S = 0.05  # between execs: only background processes write
_DRAIN_BUSY_READS = 4  # reads in one round that mean output is pouring in
_THREAD_STACK_BYTES = 4 << 20  # half the default: the helper's threads run shallow code


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


class OutputLimitExceededError(BaseException):
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
        self._thread = start_thread(self._drain, "execloop-drain")

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


def start_thread(target: Any, name: str) -> threading.Thread:
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
