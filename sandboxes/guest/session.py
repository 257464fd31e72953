"""The helper's session: the request loop, and an exec from the code to its reply.

The user's code runs in this process (that is what makes sessions stateful) with fds 1 and 2
captured (``capture.py``); after it, the reply says how it ended, and the checks in
``probes.py`` say whether the helper can serve on. Everything the helper reports is
*untrusted* from the host's point of view: the user's code shares its process.
"""

from __future__ import annotations

# Only what serving needs is imported up front: the helper's start is part of every cold
# sandbox start. What an exec's reply needs is imported by a thread after the greeting (an
# import can fail once the user's code has used up the descriptors or the memory); the rest
# (tarfile, hashlib...) is imported when a request needs it.
import builtins
import contextlib
import errno
import mmap
import os
import signal
import sys
import threading
import time

from .capture import OutputLimitExceededError, _Capture, start_thread
from .framing import CHUNK_BYTES, Receiver, encode_frame, encode_reply
from .manifests import TarRefusedError
from .probes import (
    NativeCode,
    kill_other_processes,
    only_helper_left,
    oom_kills,
    peak_memory,
    traced,
)
from .transfers import FileRequests, NoSpaceError

TYPE_CHECKING = False  # not typing's: importing typing costs every start 4 ms
if TYPE_CHECKING:
    import _socket
    from typing import Any, NoReturn

__all__ = ["_Session", "python_exit_status"]

_RESERVE_BYTES = 4 << 20  # freed to report a MemoryError in the helper's own work
_HEADROOM_BYTES = 2 * CHUNK_BYTES  # private memory a transfer needs after an exec; less ends it
_real_exit = os._exit


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


class _Session(FileRequests):
    # False where the helper shares the host's cgroup (restricted backend): its counters are
    # the host's, not the sandbox's.
    use_cgroup = True

    def __init__(self, sock: _socket.socket, workspace: str, reap_all: bool) -> None:
        self.sock = sock
        self.receiver = Receiver(sock)
        self.workspace = workspace
        self.reap_all = reap_all
        self.pid = os.getpid()
        self.capture = _Capture()
        self.native = NativeCode()
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
            raise OutputLimitExceededError

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
            start_thread(_preload, "execloop-preload")
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
            self._send(encode_reply(reply, reply_body, compact=header.get("compact", False)))

    def _failure(self, exc: BaseException) -> dict[str, Any]:
        plain = isinstance(exc, (TarRefusedError, NoSpaceError))
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
            self._oom_before = oom_kills() if self.use_cgroup else None
        send = self._send if header.get("stream") else None
        self.capture.begin(keep=int(header["keep"]), limit=int(header["limit"]), send=send)
        self.started = time.monotonic()
        exit_code = self._run_user_code(header)
        try:
            alone = False
            if self.reap_all and not header.get("keep_background", False):
                with contextlib.suppress(OSError):  # no descriptor left: the host kills all
                    if not only_helper_left():
                        kill_other_processes(self.pid)
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
        oom_after = self._oom_after = oom_kills() if self.use_cgroup else None
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
            "peak_memory_bytes": peak_memory(self.use_cgroup),
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
        if self.native.seen() and traced():
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
            self._send(encode_reply({**reply, "ok": True}, b"", compact=False))
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
        except OutputLimitExceededError:
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


def _preload() -> None:
    """Import what an exec's reply needs while imports still work (see the imports above)."""
    with contextlib.suppress(Exception):
        import linecache
        import resource
        import tokenize
        import traceback

        del linecache, resource, tokenize, traceback
