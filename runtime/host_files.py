"""Host files a user names, read without surprises: from descriptors, never following a link
the caller did not choose, never opening a fifo or a device for reading, never unbounded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from execloop.errors import ConfigError

__all__ = ["DIR_FLAGS", "MAX_SCRIPT_BYTES", "READ_FLAGS", "human_bytes", "kind_of", "read_script"]

MAX_SCRIPT_BYTES = 4 * 1024**2
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a fifo replace a file between a check and the open, the open cannot block
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_KINDS = (
    (stat.S_ISFIFO, "a fifo"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
)


def kind_of(mode: int) -> str:
    """``a fifo``, ``a directory``, ... — what a file system entry is, for messages."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file")


def human_bytes(size: int) -> str:
    """``1.2 GB``-style sizes (decimal units, as people read them)."""
    value = float(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def read_script(path: Path, *, max_bytes: int = MAX_SCRIPT_BYTES) -> bytes:
    """The bytes of a script file: a regular file of at most ``max_bytes``, never a fifo or a
    device (checked on the open descriptor, so nothing blocks or reads without end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read the script {path}: {exc.strerror or exc}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"the script {path} is {kind_of(info.st_mode)}; give a Python file to run"
            )
        raise ConfigError(
            f"the script {path} has {human_bytes(info.st_size)}; scripts are limited to "
            f"{human_bytes(max_bytes)} (pass data with --input instead)"
        )
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while being read
        raise ConfigError(f"the script {path} is larger than {human_bytes(max_bytes)}")
    return data
