"""What the helper checks about its sandbox after each exec: cgroup counters (OOM kills, peak
memory, tasks), whether it is traced, whether any other process is left (and killing those),
and whether ``--reap-all`` may run here at all. A counter is one ``pread`` of a kept
descriptor; /proc is scanned only when a counter says a process could have been left."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

__all__ = [
    "NativeCode",
    "cgroup_value",
    "kill_other_processes",
    "memory_headroom",
    "on_tmpfs",
    "only_helper_left",
    "oom_kills",
    "peak_memory",
    "private_pid_namespace_problem",
    "traced",
]

_counter_fds: dict[str, tuple[int, int, int]] = {}  # path: (fd, st_dev, st_ino)
_absent: set[str] = set()


def _kept(path: str, flags: int = os.O_RDONLY) -> tuple[int, os.stat_result] | None:
    """A descriptor of ``path`` kept open (opening a /proc or cgroup file costs more than the
    rest of an exec's bookkeeping) and its ``fstat``; None if there is no such file. The user's
    code may close or reuse the descriptor, so its identity is checked on each use (a stray
    one is left alone)."""
    known = _counter_fds.get(path)
    if known is not None:
        fd, dev, ino = known
        try:
            info = os.fstat(fd)
            if info.st_ino == ino and info.st_dev == dev:
                return fd, info
        except OSError:
            pass
        del _counter_fds[path]
    if path in _absent:
        return None
    try:
        fd = os.open(path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        _absent.add(path)  # cgroup files do not appear later
        return None
    except OSError:
        return None
    info = os.fstat(fd)
    _counter_fds[path] = (fd, info.st_dev, info.st_ino)
    return fd, info


def _read_counter(path: str, size: int = 4096) -> bytes | None:
    """A kept file's text: one ``pread`` (offset 0 makes the kernel render it anew)."""
    kept = _kept(path)
    return None if kept is None else os.pread(kept[0], size, 0)


def cgroup_value(*candidates: str, key: str | None = None) -> int | None:
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


def oom_kills() -> int | None:
    return cgroup_value(
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
        key="oom_kill",
    )


def peak_memory(use_cgroup: bool = True) -> int | None:
    peak = None
    if use_cgroup:
        peak = cgroup_value(
            "/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"
        )
    if peak is None:  # no cgroup view (bubblewrap): this process and its children, in KiB
        import resource

        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak = max(self_rss, child_rss) * 1024
    return peak


def memory_headroom() -> int | None:
    """Bytes the sandbox's memory cgroup still allows, if it has a limit."""
    limit = cgroup_value("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    usage = cgroup_value(
        "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"
    )
    if limit is None or usage is None or limit >= 1 << 60:
        return None
    return max(0, limit - usage)


def on_tmpfs(path: str) -> bool:
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


def traced() -> bool:
    """Whether a tracer is attached to this process (``TracerPid`` in its status: one
    ``pread`` of a descriptor kept open)."""
    try:
        status = _read_counter("/proc/self/status", size=1 << 14) or b""
    except OSError:
        return False
    start = status.find(b"TracerPid:")
    return start >= 0 and status[start + 10 : status.find(b"\n", start)].strip() != b"0"


class NativeCode:
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


def only_helper_left() -> bool:
    """Whether the sandbox's PID namespace surely holds nothing but its init and the helper:
    its pids cgroup counts one task per thread, and the link count of the helper's task folder
    is 2 + its threads (an ``fstat`` of a kept descriptor renders it anew). Two cheap reads
    instead of a scan of /proc after every exec; without
    a pids counter (bubblewrap) the answer is False, and the caller scans."""
    tasks = cgroup_value("/sys/fs/cgroup/pids.current", "/sys/fs/cgroup/pids/pids.current")
    if tasks is None:
        return False
    own = _kept(f"/proc/{os.getpid()}/task", os.O_RDONLY | os.O_DIRECTORY)
    return own is not None and tasks == 1 + own[1].st_nlink - 2


def kill_other_processes(me: int) -> None:
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
