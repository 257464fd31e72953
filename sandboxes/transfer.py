"""Host side of file transfer: archives built and checked here, extracted safely, streamed.

Both directions are checked: an upload is refused before it leaves the host, and a download
is checked again before extraction, because a sandbox's output is untrusted. Host files are
read without following links (only the root the caller named may be one) and streamed in
chunks, so a transfer's size never becomes the host's memory.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import tarfile
from collections.abc import AsyncGenerator, Generator, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import anyio.to_thread

from execloop.errors import ConfigError, TransferError
from execloop.sandboxes.helper import CHUNK_BYTES, TarRefusedError, check_tar_member, walk_files

__all__ = [
    "Archive",
    "HostEntry",
    "archive_totals",
    "check_archive",
    "check_name",
    "extract_tar",
    "host_entries",
    "measure_path",
    "single_file",
    "tar_chunks",
    "tar_from_mapping",
    "tar_from_path",
]

# bytes for an archive in memory, or an open binary file (a spooled download)
Archive = bytes | BinaryIO
# (name in the archive, open file or None for a folder, size, executable)
HostEntry = tuple[str, BinaryIO | None, int, bool]

_NAME_MAX = 255
_PATH_MAX = 4095
_BLOCK = tarfile.BLOCKSIZE
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def check_name(name: object, *, what: str = "path") -> str:
    """``name`` if a file system can hold it as a relative path, else ``ConfigError``."""
    if not isinstance(name, str):
        raise ConfigError(f"the {what} must be a str, not {type(name).__name__}")
    if "\0" in name:
        raise ConfigError(f"the {what} {name!r} contains a NUL byte, which no file name can hold")
    try:
        encoded = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"the {what} {name!r} cannot be encoded as a file name: {exc}") from None
    if len(encoded) > _PATH_MAX:
        raise ConfigError(
            f"the {what} is {len(encoded)} bytes long; paths hold at most {_PATH_MAX}"
        )
    for part in encoded.split(b"/"):
        if len(part) > _NAME_MAX:
            raise ConfigError(
                f"the {what} {name!r} has a component of {len(part)} bytes; "
                f"file names hold at most {_NAME_MAX}"
            )
    return name


def _open(archive: Archive) -> tarfile.TarFile:
    if isinstance(archive, bytes):
        archive = io.BytesIO(archive)
    archive.seek(0)
    try:
        return tarfile.open(fileobj=archive, mode="r:")
    except tarfile.TarError as exc:
        raise TransferError(f"not an uncompressed tar archive: {exc}") from exc


def _members(archive: Archive) -> list[tarfile.TarInfo]:
    with _open(archive) as tar:
        try:
            return tar.getmembers()
        except tarfile.TarError as exc:
            raise TransferError(f"a corrupt tar archive: {exc}") from exc


def archive_totals(archive: Archive) -> tuple[int, int]:
    """``(files, bytes)`` an archive holds (not checked: ``check_archive`` does that)."""
    files = [member for member in _members(archive) if member.isfile()]
    return len(files), sum(member.size for member in files)


def check_archive(archive: Archive) -> list[tarfile.TarInfo]:
    """Every member of ``archive``, or ``TransferError`` naming the first unsafe entry."""
    members = _members(archive)
    try:
        for member in members:
            check_tar_member(member)
    except TarRefusedError as exc:
        raise TransferError(str(exc)) from exc
    return members


def tar_from_mapping(files: Mapping[str, bytes | str]) -> bytes:
    """A tar of ``{relative name: content}``; names and contents are checked first."""
    if not isinstance(files, Mapping):
        raise ConfigError(
            f"upload() takes a pathlib.Path or a {{name: content}} mapping, "
            f"not {type(files).__name__}"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for name, content in files.items():
            check_name(name, what="upload name")
            if str(PurePosixPath(name)) in (".", "/"):
                raise ConfigError(f"the upload name {name!r} does not name a file")
            if isinstance(content, str):
                data = content.encode()
            elif isinstance(content, bytes | bytearray | memoryview):
                data = bytes(content)
            else:
                raise ConfigError(
                    f"the upload content of {name!r} must be bytes or str, "
                    f"not {type(content).__name__}"
                )
            info = tarfile.TarInfo(str(PurePosixPath(name)))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    check_archive(archive)
    return archive


def _open_source(source: Path) -> tuple[int, os.stat_result]:
    """An fd on the host file or folder ``source`` (the caller named it: a link is followed)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise TransferError(f"{source} does not exist on the host") from exc
    except OSError as exc:
        raise TransferError(f"{source} cannot be read: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        os.close(fd)
        raise TransferError(
            f"{source} is neither a regular file nor a folder; only those are uploaded"
        )
    return fd, info


def _regular(name: str, dir_fd: int) -> tuple[BinaryIO, os.stat_result] | None:
    """``name`` opened if it is a regular file reached without a link, else None."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return None  # a link, a socket, or gone meanwhile: never crosses
        raise TransferError(f"{name} cannot be read: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), info


def host_entries(source: Path) -> Generator[HostEntry, None, None]:
    """What an upload of the host path ``source`` sends, in path order: a file under its own
    name, or a folder's contents (links and special files are skipped, never followed). Each
    file is open until the next entry is asked for."""
    fd, info = _open_source(source)
    if stat.S_ISREG(info.st_mode):
        with os.fdopen(fd, "rb") as single:
            yield source.name, single, info.st_size, bool(info.st_mode & 0o111)
        return
    try:
        for path, dir_fd, name, is_dir in walk_files(fd, folders=True):
            if is_dir:
                yield path, None, 0, True
                continue
            opened = _regular(name, dir_fd)
            if opened is not None:
                handle, found = opened
                with handle:
                    yield path, handle, found.st_size, bool(found.st_mode & 0o111)
    finally:
        os.close(fd)


def measure_path(source: Path) -> tuple[int, int]:
    """``(files, bytes)`` that uploading ``source`` sends, without reading any file."""
    fd, info = _open_source(source)
    try:
        if stat.S_ISREG(info.st_mode):
            return 1, info.st_size
        files = size = 0
        for _, dir_fd, name, is_dir in walk_files(fd):
            if is_dir:
                continue
            try:
                found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(found.st_mode):
                files, size = files + 1, size + found.st_size
        return files, size
    finally:
        os.close(fd)


def _member(name: str, size: int, *, folder: bool, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.size = size
    info.mode = 0o755 if folder or executable else 0o644
    return info


def tar_from_path(source: Path) -> bytes:
    """A tar of a host file or folder, in memory (small inputs; ``tar_chunks`` streams)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for name, handle, size, executable in host_entries(source):
            tar.addfile(_member(name, size, folder=handle is None, executable=executable), handle)
    return buffer.getvalue()


async def tar_chunks(source: Path) -> AsyncGenerator[bytes, None]:
    """The tar of a host file or folder as chunks of at most ``CHUNK_BYTES`` (files are read
    in a worker thread). A file that shrinks while it is read is a ``TransferError``."""
    entries = host_entries(source)
    try:
        while (entry := await anyio.to_thread.run_sync(next, entries, None)) is not None:
            name, handle, size, executable = entry
            member = _member(name, size, folder=handle is None, executable=executable)
            yield member.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
            if handle is None:
                continue
            left = size
            while left:
                chunk = await anyio.to_thread.run_sync(handle.read, min(left, CHUNK_BYTES))
                if not chunk:
                    raise TransferError(f"{source}/{name} shrank while it was uploaded")
                left -= len(chunk)
                yield chunk
            if size % _BLOCK:
                yield bytes(_BLOCK - size % _BLOCK)
        yield bytes(2 * _BLOCK)  # the end-of-archive marker
    finally:
        entries.close()


def extract_tar(archive: Archive, dest: Path) -> list[Path]:
    """Extract a checked archive under ``dest``, file by file in chunks; the files written."""
    members = check_archive(archive)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = []
    with _open(archive) as tar:
        for member in members:
            target = (root / member.name).resolve()
            if target != root and root not in target.parents:
                raise TransferError(f"tar entry {member.name!r} resolves outside {dest}")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                raise TransferError(f"tar entry {member.name!r} has no data")
            with target.open("wb") as handle:
                shutil.copyfileobj(source, handle, CHUNK_BYTES)
            written.append(target)
    return written


def single_file(archive: Archive, path: str) -> bytes:
    """The content of the only regular file in ``archive`` (what ``read_file`` asked for)."""
    files = [member for member in check_archive(archive) if member.isfile()]
    if len(files) != 1:
        raise TransferError(f"{path!r} is not a single regular file in the workspace")
    with _open(archive) as tar:
        source = tar.extractfile(files[0])
        if source is None:
            raise TransferError(f"{path!r} has no data")
        return source.read()
