"""Host temporary directories that name their owner, so orphans can be found and removed.

Every directory execloop makes on the host for a sandbox (control sockets, a process's state,
a kernel's connection files and workspace) is ``$TMPDIR/execloop-<kind>-<pid>.<ticks>-<random>``:
the pid and start time (clock ticks since boot) of the process that made it. When that process
is gone (killed with SIGKILL, say), nothing else would ever remove the directory; ``reap``
finds it by name and removes it. A recycled pid is not mistaken for the owner: its start time
differs. Before that backstop, the owner's janitor (``janitor.py``) removes the directories it
still holds the moment it dies.

A directory that holds Unix sockets must keep their paths under the kernel's 108 bytes: under a
long ``$TMPDIR`` (a test runner's, macOS-style) it is made in ``/tmp`` instead, and ``reap``
looks there too.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from execloop.errors import ConfigError
from execloop.sandboxes import janitor
from execloop.sandboxes.janitor import process_start_ticks

__all__ = [
    "PREFIX",
    "make_temp_dir",
    "orphaned_temp_dirs",
    "process_start_ticks",
    "remove_temp_dir",
]

PREFIX = "execloop-"
_KIND = re.compile(r"[a-z]+")
_NAME = re.compile(rf"{PREFIX}(?P<kind>[a-z]+)-(?P<pid>\d+)\.(?P<ticks>\d+)-[a-z0-9_]+")

log = logging.getLogger("execloop.sandboxes.tempdirs")

SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes, the last one NUL
# below a socket folder: a staging folder (".bind-" and 8 characters, channel.py) and the
# longest socket name bound there ("tools.sock", "kernel-<n>"), with room to spare
_SOCKET_TAIL = 40
_SHORT_ROOT = "/tmp"
_RANDOM = 8  # characters mkdtemp adds


def make_temp_dir(kind: str, *, mode: int = 0o700, sockets: bool = False) -> Path:
    """A new private directory owned (by name) by this process; ``kind`` says what it holds.
    With ``sockets``, a folder whose Unix sockets' paths fit the kernel's limit."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"temp dir kind {kind!r} must be lowercase letters")
    pid = os.getpid()
    prefix = f"{PREFIX}{kind}-{pid}.{process_start_ticks(pid)}-"
    root = _socket_root(len(prefix) + _RANDOM) if sockets else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    janitor.watch(janitor.path(path))
    path.chmod(mode)
    return path


def _socket_root(name_length: int) -> str:
    """The temp dir, or ``/tmp`` when sockets below the temp dir would be too long."""
    fits = SOCKET_PATH_MAX - name_length - _SOCKET_TAIL - 1
    root = tempfile.gettempdir()
    if len(os.fsencode(root)) <= fits:
        return root
    if len(_SHORT_ROOT) <= fits and os.access(_SHORT_ROOT, os.W_OK | os.X_OK):
        log.debug("%s is too long for Unix socket paths: socket folders go to /tmp", root)
        return _SHORT_ROOT
    raise ConfigError(
        f"the temp folder {root} is too long for the Unix sockets a sandbox needs (their paths "
        f"must stay under {SOCKET_PATH_MAX + 1} bytes), and {_SHORT_ROOT} cannot hold them "
        f"either: set TMPDIR to a folder of at most {fits} characters"
    )


def _roots() -> list[Path]:
    """Where execloop's directories may be: the temp dir, and /tmp for socket folders."""
    roots = [Path(tempfile.gettempdir())]
    if Path(_SHORT_ROOT) != roots[0]:
        roots.append(Path(_SHORT_ROOT))
    return roots


def orphaned_temp_dirs(root: Path | None = None) -> list[Path]:
    """execloop's directories under ``root`` (default: the temp dir and /tmp) whose owner is
    gone."""
    found = []
    for folder in _roots() if root is None else [root]:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _NAME.fullmatch(entry.name)
            if match is None or not entry.is_dir(follow_symlinks=False):
                continue
            if process_start_ticks(int(match["pid"])) != match["ticks"]:
                found.append(Path(entry.path))
    return found


def remove_temp_dir(path: Path) -> None:
    """Remove a directory made by ``make_temp_dir`` (links inside are never followed)."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove %s entirely", path)
    else:
        janitor.forget(janitor.path(path))
