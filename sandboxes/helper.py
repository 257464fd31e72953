"""execloop's in-sandbox helper: runs code sent over a Unix socket and keeps its state.

It is the only execloop code that runs *inside* a sandbox, so it uses the standard library
only; the image builder copies this file into images and the bubblewrap backend binds it in.
The host imports the framing and the tar checks from here too, so both sides share them.

Protocol: every frame is ``!IQ`` (header length, body length), a JSON header, then the body.
The helper connects to the host's listening socket, sends ``hello``, then serves requests one
at a time: ``exec``, ``put`` (tar body), ``get`` (tar reply), ``manifest``, ``ping``.

The user's code runs in this process (that is what makes sessions stateful). Its output is
captured at the file-descriptor level (fds 1 and 2 are pipes drained by one thread started
here, so a pids limit reached by the user's code cannot stop the helper from answering), kept
as head + tail, and an exec that prints more than its hard limit is stopped. Everything the
helper reports is *untrusted* from the host's point of view: the user's code shares its process.
"""

from __future__ import annotations

# Only what serving needs is imported up front: the helper's start is part of every cold
# sandbox start. Everything else (tarfile, hashlib, pathlib, traceback...) is imported lazily.
import builtins
import contextlib
import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tarfile
    from collections.abc import Iterator
    from pathlib import PurePosixPath

__all__ = [
    "FRAME_PREFIX",
    "MANIFEST_ENTRY_BUDGET",
    "MAX_HEADER_BYTES",
    "ManifestBuilder",
    "TarRefusedError",
    "check_tar_member",
    "encode_frame",
    "main",
    "manifest_body_bound",
    "walk_files",
]

FRAME_PREFIX = struct.Struct("!IQ")
MAX_HEADER_BYTES = 64 * 1024 * 1024
# A manifest's listing may take this many bytes of JSON per listed file on average (a sha256,
# a size and a path of several hundred characters); past it, files are counted, not listed.
MANIFEST_ENTRY_BUDGET = 1024
_CHUNK = 1 << 16
_HASH_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class TarRefusedError(ValueError):
    """A tar entry that could escape the destination or is not a plain file or directory."""


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


# -- manifests: shared by the helper and the host's workspace (links are never followed) ------
def _sorted_listing(dir_fd: int) -> list[tuple[str, bool]]:
    """``(name, is a folder)`` of a folder's entries, sorted so that a walk yields paths in
    string order: a folder sorts as ``name/``, as every path below it begins."""
    with os.scandir(dir_fd) as entries:
        listing = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    listing.sort(key=lambda item: item[0] + "/" if item[1] else item[0])
    return listing


def walk_files(top_fd: int) -> Iterator[tuple[str, int, str]]:
    """``(path relative to top, folder fd, name)`` of every non-folder entry under the folder
    ``top_fd``, in path order, never through a link. A folder fd is valid until the next item.
    A folder that vanishes or becomes a link meanwhile is skipped."""
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
                yield prefix + name, fd, name
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                continue
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
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return {"path": path, "size_bytes": size, "sha256": digest.hexdigest()}

    def add_tree(self, top_fd: int, prefix: str) -> None:
        """Every file under the folder ``top_fd``, named ``prefix + its relative path``."""
        for path, dir_fd, name in walk_files(top_fd):
            self.add(prefix + path, dir_fd, name)

    def reply(self) -> tuple[dict[str, Any], bytes]:
        """The protocol's reply: totals in the header, the listing as the JSON body."""
        totals = {"total_files": self.total_files, "total_bytes": self.total_bytes}
        return totals, json.dumps(self.files, separators=(",", ":")).encode()


# --------------------------------------------------------------------------------------------
# Everything below runs inside the sandbox.


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError("host closed the control socket")
        chunks += chunk
    return bytes(chunks)


def _recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    header_len, body_len = FRAME_PREFIX.unpack(_recv_exactly(sock, FRAME_PREFIX.size))
    if header_len > MAX_HEADER_BYTES:
        raise EOFError("oversized header from host")
    header = json.loads(_recv_exactly(sock, header_len))
    return header, _recv_exactly(sock, body_len) if body_len else b""


class _Bounded:
    """Keeps the first and last ``keep // 2`` bytes of a stream and counts the rest."""

    def __init__(self, keep: int) -> None:
        self.head_cap = keep - keep // 2
        self.tail_cap = keep // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
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

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        omitted = self.total - len(self.head) - len(tail)
        marker = f"\n[... execloop: {omitted} bytes omitted ...]\n".encode()
        return (bytes(self.head) + marker + tail).decode("utf-8", "replace")


class _OutputLimitExceededError(BaseException):
    """Raised in the user's code when it has printed more than the exec's hard limit."""


class _Capture:
    """fds 1 and 2 become pipes for the helper's lifetime; one thread drains them."""

    def __init__(self) -> None:
        self._out_r, out_w = os.pipe()
        self._err_r, err_w = os.pipe()
        self._ctl_r, self._ctl_w = os.pipe()
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        for fd in (self._out_r, self._err_r, self._ctl_r):
            os.set_blocking(fd, False)
        self._lock = threading.Lock()
        self._flushed = threading.Event()
        self._main = threading.main_thread().ident
        self.armed = False  # True while the user's code runs: only then may the limit fire
        self.begin(keep=1024, limit=1 << 62)
        threading.Thread(target=self._drain, name="execloop-drain", daemon=True).start()

    def begin(self, *, keep: int, limit: int) -> None:
        with self._lock:
            self.out = _Bounded(keep)
            self.err = _Bounded(keep)
            self.limit = limit
            self.limit_hit = False

    def finish(self) -> None:
        """Wait until everything written so far to fds 1 and 2 has been read."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # the user may have closed it
                stream.flush()
        self._flushed.clear()
        os.write(self._ctl_w, b"x")
        self._flushed.wait()

    def _read(self, fd: int, sink: _Bounded) -> bool:
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return False
        if not data:
            return False
        with self._lock:
            sink.add(data)
            if not self.limit_hit and self.out.total + self.err.total > self.limit:
                self.limit_hit = True
                if self.armed and self._main is not None:
                    signal.pthread_kill(self._main, signal.SIGUSR1)
        return True

    def _drain(self) -> None:
        while True:
            readable, _, _ = select.select([self._out_r, self._err_r, self._ctl_r], [], [])
            if self._out_r in readable:
                self._read(self._out_r, self.out)
            if self._err_r in readable:
                self._read(self._err_r, self.err)
            if self._ctl_r in readable:
                os.read(self._ctl_r, 64)
                while self._read(self._out_r, self.out) | self._read(self._err_r, self.err):
                    pass
                self._flushed.set()


def _cgroup_value(*candidates: str, key: str | None = None) -> int | None:
    for candidate in candidates:
        try:
            with open(candidate) as handle:
                text = handle.read()
        except OSError:
            continue
        if key is None:
            return int(text.split()[0])
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
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


class _Session:
    # False where the helper shares the host's cgroup (restricted backend): its counters are
    # the host's, not the sandbox's.
    use_cgroup = True

    def __init__(self, sock: socket.socket, workspace: str, reap_all: bool) -> None:
        self.sock = sock
        self.workspace = workspace
        self.reap_all = reap_all
        self.pid = os.getpid()
        self.capture = _Capture()
        self.namespace = self.new_namespace(__name__="__main__")
        self.counter = 0
        self.memory_error = False
        signal.signal(signal.SIGUSR1, self._on_output_limit)

    def _on_output_limit(self, signum: int, frame: object) -> None:
        if self.capture.armed:
            raise _OutputLimitExceededError

    # -- seams: how code is compiled and which globals it sees (the restricted runner's) -----
    def compile_source(self, source: str, filename: str) -> Any:
        return compile(source, filename, "exec")

    def new_namespace(self, **names: Any) -> dict[str, Any]:
        return {"__builtins__": builtins, **names}

    # -- requests ----------------------------------------------------------------------------
    def serve(self) -> None:
        self.sock.sendall(encode_frame({"op": "hello", "pid": self.pid, "python": sys.version}))
        while True:
            try:
                header, body = _recv_frame(self.sock)
            except EOFError:
                return
            op = header.get("op")
            try:
                handler = getattr(self, f"op_{op}")
                reply, reply_body = handler(header, body)
                reply["ok"] = True
            except Exception as exc:  # reported to the host, which raises its own error
                reply, reply_body = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, b""
            self.sock.sendall(encode_frame(reply, reply_body))

    def op_ping(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        return {}, b""

    def op_exec(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        self.counter += 1
        oom_before = _oom_kills() if self.use_cgroup else None
        self.capture.begin(keep=int(header["keep"]), limit=int(header["limit"]))
        started = time.monotonic()
        exit_code = self._run_user_code(header)
        if self.reap_all and not header.get("keep_background", False):
            _kill_other_processes(self.pid)
        self.capture.finish()
        duration = time.monotonic() - started
        oom_after = _oom_kills() if self.use_cgroup else None
        if self.capture.limit_hit:
            reason = "output_limit"
        elif self.memory_error or (
            oom_before is not None and oom_after is not None and oom_after > oom_before
        ):
            reason = "oom"
        else:
            reason = "ok" if exit_code == 0 else "error"
        out, err = self.capture.out, self.capture.err
        return {
            "exit_code": exit_code,
            "exit_reason": reason,
            "stdout": out.text(),
            "stderr": err.text(),
            "stdout_truncated": out.truncated,
            "stderr_truncated": err.truncated,
            "duration_s": duration,
            "peak_memory_bytes": _peak_memory(self.use_cgroup),
        }, b""

    def _run_user_code(self, header: dict[str, Any]) -> int:
        path = header.get("path")
        saved_argv, saved_path0 = sys.argv, sys.path[0] if sys.path else ""
        try:
            if path is not None:
                filename = self._inside(path)
                with open(filename, encoding="utf-8") as handle:
                    source = handle.read()
                sys.argv = [filename, *header.get("args", [])]
                sys.path[0] = os.path.dirname(filename)
                namespace = self.new_namespace(__name__="__main__", __file__=filename)
            else:
                source = header["code"]
                filename = f"<exec-{self.counter}>"
                namespace = self.namespace
            import linecache

            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            compiled = self.compile_source(source, filename)
        except (OSError, SyntaxError, ValueError) as exc:
            import traceback

            traceback.print_exception(exc, limit=0)
            return 1
        code = 0
        self.memory_error = False  # an allocation refused by a limit (rlimit, cgroup) is OOM
        self.capture.armed = True
        try:
            exec(compiled, namespace)
        except SystemExit as exc:
            code = self._exit_status(exc)
        except _OutputLimitExceededError:
            code = 1
        except BaseException as exc:  # report it like Python would, without our frame
            self.memory_error = isinstance(exc, MemoryError)
            import traceback

            tb = exc.__traceback__.tb_next if exc.__traceback__ else None
            traceback.print_exception(type(exc), exc, tb)
            code = 1
        finally:
            self.capture.armed = False
            if os.getpid() != self.pid:  # a forked child left the user's code: never serve
                for stream in (sys.stdout, sys.stderr):
                    stream.flush()
                os._exit(code)
            sys.argv = saved_argv
            if sys.path:
                sys.path[0] = saved_path0
        if path is not None:  # like IPython's %run: the script's globals join the session
            self.namespace.update({k: v for k, v in namespace.items() if not k.startswith("__")})
        return code

    @staticmethod
    def _exit_status(exc: SystemExit) -> int:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1

    def _inside(self, relative: str) -> str:
        target = os.path.realpath(os.path.join(self.workspace, relative))
        if target != self.workspace and not target.startswith(self.workspace + os.sep):
            raise TarRefusedError(f"{relative!r} is outside the workspace")
        return target

    def op_put(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        import io
        import tarfile

        dest = self._inside(header.get("dest", "."))
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
            members = archive.getmembers()
            for member in members:
                check_tar_member(member)
            for member in members:
                target = self._inside(os.path.join(dest, member.name))
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                with open(target, "wb") as handle:
                    while chunk := source.read(_CHUNK):
                        handle.write(chunk)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
        return {"files": sum(1 for m in members if m.isfile())}, b""

    def _walk(self, root: str) -> list[str]:
        """Regular files under ``root`` (links are never followed nor listed), sorted."""
        if os.path.isfile(root):
            return [root]
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{os.path.relpath(root, self.workspace)} does not exist")
        found = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                candidate = os.path.join(folder, name)
                if os.path.isfile(candidate) and not os.path.islink(candidate):
                    found.append(candidate)
        return found

    def op_get(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        import io
        import tarfile

        root = self._inside(header["path"])
        files = self._walk(root)
        base = os.path.dirname(root) if os.path.isfile(root) else root
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:") as archive:
            for file in files:
                archive.add(file, arcname=os.path.relpath(file, base), recursive=False)
        return {"files": len(files)}, buffer.getvalue()

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


def main(argv: list[str] | None = None, *, session_class: type[_Session] = _Session) -> None:
    """``helper.py SOCKET [--workspace DIR] [--session ID] [--reap-all]`` (no argparse: it
    would slow every start)."""
    args = list(sys.argv[1:] if argv is None else argv)
    reap_all = "--reap-all" in args
    if reap_all:  # kill every other process after each exec: only in a private PID namespace
        args.remove("--reap-all")
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
