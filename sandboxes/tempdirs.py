"""Host temporary directories that name their owner, so orphans can be found and removed.

Every directory execloop makes on the host for a sandbox (control sockets, a process's state,
a kernel's connection files and workspace) is ``$TMPDIR/execloop-<kind>-<pid>.<ticks>-<random>``:
the pid and start time (clock ticks since boot) of the process that made it. When that process
is gone (killed with SIGKILL, say), nothing else would ever remove the directory; ``reap``
finds it by name and removes it. A recycled pid is not mistaken for the owner: its start time
differs. Before that backstop, the owner's janitor (``janitor.py``) removes the directories it
still holds the moment it dies.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

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


def make_temp_dir(kind: str, *, mode: int = 0o700) -> Path:
    """A new private directory owned (by name) by this process; ``kind`` says what it holds."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"temp dir kind {kind!r} must be lowercase letters")
    pid = os.getpid()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{pid}.{process_start_ticks(pid)}-"))
    janitor.watch(janitor.path(path))
    path.chmod(mode)
    return path


def orphaned_temp_dirs(root: Path | None = None) -> list[Path]:
    """execloop's directories under ``root`` (default: the temp dir) whose owner is gone."""
    root = Path(tempfile.gettempdir()) if root is None else root
    found = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
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
