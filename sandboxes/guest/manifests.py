"""Tar checks and manifests, shared by the helper and the host's workspace: a walk of a folder
that never follows a link, and a bounded listing (path, size, sha256) of what it finds."""

from __future__ import annotations

import errno
import json
import os

from .framing import CHUNK_BYTES

TYPE_CHECKING = False  # not typing's: importing typing costs every start 4 ms
if TYPE_CHECKING:
    import tarfile
    from collections.abc import Iterator
    from pathlib import PurePosixPath
    from typing import Any

__all__ = [
    "DIR_FLAGS",
    "MANIFEST_ENTRY_BUDGET",
    "ManifestBuilder",
    "READ_FLAGS",
    "TarRefusedError",
    "check_tar_member",
    "manifest_body_bound",
    "walk_files",
]

# A manifest's listing may take this many bytes of JSON per listed file on average (a sha256,
# a size and a path of several hundred characters); past it, files are counted, not listed.
MANIFEST_ENTRY_BUDGET = 1024
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
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

        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
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
