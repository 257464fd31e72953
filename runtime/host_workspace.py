"""A host directory used as a sandbox's workspace (``--workspace DIR``, ``workspace_dir=``),
claimed so that nothing in it is lost.

One run at a time: the claim holds an exclusive ``flock`` on the directory itself (no lock file
appears among the user's files), and a second run is refused naming the holder, so two runs
sharing a directory never run each other's script. Nothing is overwritten: the script's name
must be free (its copy is removed after the run, so running again in the same directory works),
and an input's name may exist only with the very same bytes. System directories are refused
outright.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from execloop.errors import ConfigError
from execloop.runtime.host_files import DIR_FLAGS, READ_FLAGS
from execloop.runtime.inputs import Inputs

__all__ = ["HostWorkspace", "check_workspace_dir"]

# Directories no sandbox may write to: these exactly, and anything below the trees.
_SYSTEM = frozenset(
    ("/", "/home", "/media", "/mnt", "/opt", "/root", "/snap", "/srv", "/tmp", "/var", "/var/tmp")
)
_SYSTEM_TREES = (
    *("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run"),
    *("/sbin", "/sys", "/usr", "/var/cache", "/var/lib", "/var/log", "/var/mail", "/var/spool"),
)
_CHUNK = 1 << 20


def check_workspace_dir(path: Path) -> None:
    """Refuse system directories (and the home directory itself) as a workspace."""
    resolved = os.path.realpath(path)
    if (
        resolved in _SYSTEM
        or resolved == os.path.realpath(Path.home())
        or any(resolved == tree or resolved.startswith(f"{tree}/") for tree in _SYSTEM_TREES)
    ):
        raise ConfigError(
            f"workspace {path} is a system directory (or your home directory itself), which a "
            f"sandbox must never write to; use a directory of your own (e.g. ./out, which "
            f"execloop creates)"
        )


def _lock_holder(fd: int) -> str:
    """Who holds the flock on ``fd``'s file, from /proc/locks: ``pid 123: execloop run x``."""
    info = os.fstat(fd)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return "another process"
    pids = [
        f[4] for f in map(str.split, lines) if len(f) > 5 and f[1] == "FLOCK" and f[5] == device
    ]
    inode = f":{info.st_ino}"  # overlay file systems report another device number there
    pids = pids or [f[4] for f in map(str.split, lines) if len(f) > 5 and f[5].endswith(inode)]
    for pid in pids:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            return f"pid {pid}: {' '.join(command.replace(chr(0), ' ').split())[:100]}"
    return f"pid {pids[0]}" if pids else "another process"


class HostWorkspace:
    """An exclusive claim on a workspace directory for one run; use ``HostWorkspace.claim``."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._created: list[str] = []

    @classmethod
    @contextlib.contextmanager
    def claim(cls, path: Path) -> Iterator[HostWorkspace]:
        """Lock ``path`` for this run; on leaving, remove the files it ``reserve``d."""
        check_workspace_dir(path)
        try:
            fd = os.open(path, DIR_FLAGS)
        except OSError as exc:
            raise ConfigError(f"workspace {path}: {exc.strerror or exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise ConfigError(f"workspace {path} cannot be locked: {exc}") from exc
                raise ConfigError(
                    f"workspace {path} is in use by another execloop run ({_lock_holder(fd)}); "
                    f"wait for it to finish or choose another workspace directory"
                ) from None
            claim = cls(path, fd)
            try:
                yield claim
            finally:
                claim._remove_created()
        finally:
            os.close(fd)  # releases the lock

    def reserve(self, name: str) -> None:
        """Refuse if ``name`` exists at all; the run writes it and it is removed afterwards."""
        existing = self._open(name)
        if existing is not None:
            os.close(existing)
            raise self._exists(name)
        self._created.append(name)

    def refuse_overwrite(self, name: str, content: bytes) -> None:
        """Refuse if ``name`` exists with other bytes than ``content``."""
        existing = self._open(name)
        if existing is not None:
            with os.fdopen(existing, "rb") as handle:
                if handle.read(len(content) + 1) != content:
                    raise self._exists(name)

    def refuse_overwriting_inputs(self, inputs: Inputs, staged: Path | None) -> None:
        """Every input file may be absent from the workspace or identical to its staged copy."""
        for name in inputs.dirs:
            self._check_dir(name)
        for item in inputs.files:
            existing = self._open(item.name)
            if existing is None:
                continue
            assert staged is not None
            with os.fdopen(existing, "rb") as current, (staged / item.name).open("rb") as ours:
                while True:
                    chunk = ours.read(_CHUNK)
                    if current.read(len(chunk) or 1) != chunk:
                        raise self._exists(item.name)
                    if not chunk:
                        break

    def _exists(self, name: str) -> ConfigError:
        return ConfigError(
            f"{self.path / name} exists; execloop will not overwrite it: move it or choose "
            f"another workspace directory"
        )

    def _walk(self, parts: tuple[str, ...]) -> int | None:
        """A descriptor on the directory ``parts`` below the workspace, or None if absent."""
        fd = os.dup(self._fd)
        try:
            for part in parts:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except FileNotFoundError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise self._exists("/".join(parts)) from exc  # a link or a file in the way
        return fd

    def _check_dir(self, name: str) -> None:
        fd = self._walk(PurePosixPath(name).parts)
        if fd is not None:
            os.close(fd)

    def _open(self, name: str) -> int | None:
        """A read descriptor on the existing regular file ``name``, None if nothing is there;
        anything else in the way (a link, a fifo, a directory) is refused as existing."""
        *folders, last = PurePosixPath(name).parts
        parent = self._walk(tuple(folders))
        if parent is None:
            return None
        try:
            mode = os.stat(last, dir_fd=parent, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise self._exists(name)
            return os.open(last, READ_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return None
        finally:
            os.close(parent)

    def _remove_created(self) -> None:
        for name in self._created:
            *folders, last = PurePosixPath(name).parts
            parent = self._walk(tuple(folders))
            if parent is None:
                continue
            try:  # only a regular file: never follow or remove what the script put there
                if stat.S_ISREG(os.stat(last, dir_fd=parent, follow_symlinks=False).st_mode):
                    os.unlink(last, dir_fd=parent)
            except OSError:
                pass
            finally:
                os.close(parent)
