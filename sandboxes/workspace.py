"""A sandbox's workspace as a host directory, handled from the host without trusting it.

The sandbox writes into this directory while the host reads and writes it too, often as root, so
every path is walked one component at a time from a directory descriptor with ``O_NOFOLLOW``: a
symlink (or a fifo, a device, a hard link to some other file) planted by the sandbox is refused,
never followed, and there is no window between a check and its use.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from execloop.errors import TransferError
from execloop.sandboxes import helper, transfer
from execloop.sandboxes.base import (
    DEFAULT_MANIFEST_LIMIT,
    Artifact,
    Manifest,
    check_manifest_limit,
)

__all__ = ["Workspace"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@contextlib.contextmanager
def _refusals(what: str) -> Iterator[None]:
    """OS errors while touching the workspace become ``TransferError`` naming the path."""
    try:
        yield
    except TransferError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TransferError(
                f"{what}: a symbolic link is in the way; links are refused"
            ) from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise TransferError(f"{what}: no such file or directory in the workspace") from exc
        raise TransferError(f"{what}: {exc.strerror or exc}") from exc


def _refuse_link(name: str, dir_fd: int) -> None:
    if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        raise TransferError(f"{name!r} is a symbolic link; links are refused, never followed")


def _open_subdir(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            _refuse_link(name, dir_fd)
        raise


def _parts(relative: str) -> tuple[str, ...]:
    path = PurePosixPath(relative)
    if path.is_absolute() or relative.startswith("\\"):
        raise TransferError(f"{relative!r}: absolute paths are refused")
    if ".." in path.parts:
        raise TransferError(f"{relative!r}: '..' components are refused (path traversal)")
    return tuple(part for part in path.parts if part != ".")


class Workspace:
    """Host-side file operations on a workspace directory the sandbox also writes."""

    def __init__(self, root: Path, *, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        # what the host creates is handed to the sandbox user, who must be able to change it
        self.owner = owner

    # -- walking ---------------------------------------------------------------------------
    def _open_dir(self, parts: tuple[str, ...], *, create: bool = False) -> int:
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                        self._chown(part, fd)
                child = _open_subdir(part, fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _chown(self, name: str | int, dir_fd: int | None = None) -> None:
        if self.owner is not None and os.geteuid() == 0:
            if isinstance(name, int):
                os.fchown(name, *self.owner)
            else:
                os.chown(name, *self.owner, dir_fd=dir_fd, follow_symlinks=False)

    @staticmethod
    def _open_regular(name: str, dir_fd: int) -> tuple[int, os.stat_result] | None:
        """An open descriptor on ``name`` if it is a regular file (never a link or fifo)."""
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return None
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        return fd, info

    def _files(self, relative: str) -> Iterator[tuple[str, int, os.stat_result]]:
        """``(path relative to the workspace, open fd, stat)`` of every regular file under
        ``relative``, sorted, links never followed. The caller closes each fd."""
        parts = _parts(relative)
        parent = self._open_dir(parts[:-1])
        try:
            if parts:
                _refuse_link(parts[-1], parent)
                opened = self._open_regular(parts[-1], parent)
                if opened is not None:
                    yield "/".join(parts), *opened
                    return
            top = self._open_dir(parts)
        finally:
            os.close(parent)
        try:
            for folder, dirs, names, folder_fd in os.fwalk(".", dir_fd=top):
                dirs.sort()
                base = PurePosixPath(*parts, folder)
                for name in sorted(names):
                    opened = self._open_regular(name, folder_fd)
                    if opened is not None:
                        yield str(base / name), *opened
        finally:
            os.close(top)

    # -- reading ---------------------------------------------------------------------------
    def manifest(self, relative: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        """The bounded manifest of the file or folder ``relative`` (``Sandbox.manifest``)."""
        parts = _parts(relative)
        builder = helper.ManifestBuilder(check_manifest_limit(limit))
        with _refusals(f"artifacts of {relative!r}"):
            parent = self._open_dir(parts[:-1])
            try:
                single = bool(parts) and not self._is_folder(parts[-1], parent)
                if single:
                    builder.add("/".join(parts), parent, parts[-1])
            finally:
                os.close(parent)
            if not single:
                top = self._open_dir(parts)
                try:
                    builder.add_tree(top, "".join(f"{part}/" for part in parts))
                finally:
                    os.close(top)
        return Manifest(
            files=[Artifact.model_validate(item) for item in builder.files],
            total_files=builder.total_files,
            total_bytes=builder.total_bytes,
        )

    @staticmethod
    def _is_folder(name: str, dir_fd: int) -> bool:
        _refuse_link(name, dir_fd)
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)

    def _download_name(self, path: str, parts: tuple[str, ...]) -> str:
        """A file's name in a download of ``parts``: its own name, or relative to the folder."""
        name = PurePosixPath(path)
        if not parts:  # the whole workspace ("."): paths as they are in it
            return str(name)
        return name.name if name.parts == parts else str(name.relative_to(*parts))

    def tar(self, relative: str, *, max_bytes: int) -> bytes:
        """A tar of the file ``relative`` (under its name) or of a directory's files."""
        parts = _parts(relative)
        buffer = io.BytesIO()
        total = 0
        with _refusals(f"download of {relative!r}"), tarfile.open(fileobj=buffer, mode="w:") as tar:
            for path, fd, info in self._files(relative):
                with os.fdopen(fd, "rb") as handle:
                    total += info.st_size
                    if total > max_bytes:
                        raise TransferError(f"{relative!r} is larger than {max_bytes} bytes")
                    member = tarfile.TarInfo(self._download_name(path, parts))
                    member.size = info.st_size
                    member.mode = 0o755 if info.st_mode & 0o111 else 0o644
                    member.mtime = int(info.st_mtime)
                    tar.addfile(member, handle)
        return buffer.getvalue()

    def copy_out(self, relative: str, dest: Path) -> list[Path]:
        """Copy the file ``relative`` (under its name) or a folder's files into the host folder
        ``dest``, file by file in chunks; the files written."""
        parts = _parts(relative)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = []
        with _refusals(f"download of {relative!r}"):
            for path, fd, _ in self._files(relative):
                with os.fdopen(fd, "rb") as handle:
                    target = (root / self._download_name(path, parts)).resolve()
                    if root not in target.parents:
                        raise TransferError(f"{path!r} resolves outside {dest}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("wb") as out:
                        shutil.copyfileobj(handle, out, helper.CHUNK_BYTES)
                    written.append(target)
        return written

    def read(self, relative: str) -> bytes:
        """The bytes of the regular file ``relative`` (reached without links)."""
        parts = _parts(relative)
        with _refusals(f"{relative!r}"):
            if not parts:
                raise TransferError(f"{relative!r} is a directory, not a file")
            parent = self._open_dir(parts[:-1])
            try:
                _refuse_link(parts[-1], parent)
                opened = self._open_regular(parts[-1], parent)
            finally:
                os.close(parent)
            if opened is None:
                raise TransferError(f"{relative!r} is not a single regular file in the workspace")
            with os.fdopen(opened[0], "rb") as handle:
                return handle.read()

    def regular_file(self, relative: str) -> str:
        """``relative`` normalised, if it names a regular file reached without links."""
        parts = _parts(relative)
        with _refusals(f"{relative!r}"):
            if not parts:
                raise TransferError(f"{relative!r} is a directory, not a file")
            parent = self._open_dir(parts[:-1])
            try:
                _refuse_link(parts[-1], parent)
                opened = self._open_regular(parts[-1], parent)
            finally:
                os.close(parent)
            if opened is None:
                raise TransferError(f"{relative!r} is not a regular file")
            os.close(opened[0])
        return "/".join(parts)

    # -- writing ---------------------------------------------------------------------------
    def write(
        self,
        relative: str,
        data: bytes | IO[bytes],
        *,
        mode: int = 0o644,
        exclusive: bool = False,
    ) -> None:
        """Write a file (``data`` may be a file to copy in chunks), creating its folders;
        ``exclusive`` refuses an existing name."""
        parts = _parts(relative)
        if not parts:
            raise TransferError("cannot write to the workspace root itself")
        with _refusals(f"write of {relative!r}"):
            parent = self._open_dir(parts[:-1], create=True)
            try:
                flags = _WRITE_FLAGS | (os.O_EXCL if exclusive else 0)
                fd = os.open(parts[-1], flags, mode, dir_fd=parent)
            finally:
                os.close(parent)
            with os.fdopen(fd, "wb") as handle:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                    raise TransferError(f"{relative!r} is not a plain file (fifo or hard link)")
                handle.truncate(0)
                if isinstance(data, bytes):
                    handle.write(data)
                else:
                    shutil.copyfileobj(data, handle, helper.CHUNK_BYTES)
                os.fchmod(fd, mode)
                self._chown(fd)

    def write_new(self, folder: str, stem: str, suffix: str, data: bytes) -> str:
        """Write ``folder/stem{suffix}`` under a name nobody took yet; returns the path."""
        for attempt in range(100):
            name = f"{folder}/{stem}{f'-{attempt}' if attempt else ''}{suffix}"
            try:
                self.write(name, data, exclusive=True)
            except TransferError as exc:
                if isinstance(exc.__cause__, FileExistsError):
                    continue
                raise
            return name
        raise TransferError(f"no free name for {folder}/{stem}{suffix}")

    def extract(self, archive: bytes, dest: str = ".") -> None:
        """Extract a checked tar archive under ``dest``."""
        members = transfer.check_archive(archive)
        files = [member for member in members if member.isfile()]
        self.check_space(size=sum(member.size for member in files), files=len(files))
        base = _parts(dest)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for member in members:
                target = "/".join((*base, *_parts(member.name))) or "."
                if member.isdir():
                    with _refusals(f"folder {target!r}"):
                        os.close(self._open_dir(_parts(target), create=True))
                    continue
                source = tar.extractfile(member)
                if source is None:
                    raise TransferError(f"tar entry {member.name!r} has no data")
                self.write(target, source, mode=0o755 if member.mode & 0o111 else 0o644)

    def copy_in(self, source: Path, dest: str = ".") -> None:
        """Copy a host file or folder into ``dest`` (``transfer.host_entries`` says what is
        read), file by file in chunks, once its size is known to fit."""
        files, size = transfer.measure_path(source)
        self.check_space(size=size, files=files)
        base = _parts(dest)
        for name, handle, _, executable in transfer.host_entries(source):
            target = "/".join((*base, *_parts(name)))
            if handle is None:
                with _refusals(f"folder {target!r}"):
                    os.close(self._open_dir(_parts(target), create=True))
            else:
                self.write(target, handle, mode=0o755 if executable else 0o644)

    def check_space(self, *, size: int, files: int) -> None:
        """``TransferError`` if ``files`` files of ``size`` bytes in all cannot fit."""
        info = os.statvfs(self.root)
        free = info.f_bavail * info.f_frsize
        needed = size + files * info.f_frsize  # each file's last block, at worst
        if needed > free:
            raise TransferError(
                f"the upload needs {needed / 2**20:.1f} MiB ({files} files) but the workspace "
                f"has {free / 2**20:.1f} MiB free; free some space or use another workspace_dir"
            )
