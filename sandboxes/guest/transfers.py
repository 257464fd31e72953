"""The helper's file requests: an upload streamed in as a tar (checked member by member,
undone if it fails), a download streamed out as a tar, and a workspace manifest. A mixin of
the session, which owns the socket and the workspace."""

from __future__ import annotations

import contextlib
import errno
import os

from .framing import CHUNK_BYTES, ChunkReader, ChunkWriter, Receiver, encode_frame
from .manifests import (
    DIR_FLAGS,
    READ_FLAGS,
    ManifestBuilder,
    TarRefusedError,
    check_tar_member,
    walk_files,
)
from .probes import memory_headroom, on_tmpfs

TYPE_CHECKING = False  # not typing's: importing typing costs every start 4 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["FileRequests", "NoSpaceError"]


class NoSpaceError(Exception):
    """An upload that cannot fit in the workspace."""


class FileRequests:
    """``put``, ``get`` and ``manifest``, for a session that has a workspace, a receiver of
    the host's frames, ``use_cgroup`` and ``_send`` (of whole frames)."""

    workspace: str
    receiver: Receiver
    use_cgroup: bool
    _send: Callable[[bytes], None]  # the session's method

    def _inside(self, relative: str) -> str:
        """The real path of ``relative`` in the workspace; ``TarRefusedError`` if outside."""
        target = os.path.realpath(os.path.join(self.workspace, relative))
        if target != self.workspace and not target.startswith(self.workspace + os.sep):
            raise TarRefusedError(f"{relative!r} is outside the workspace")
        return target

    # -- files --------------------------------------------------------------------------------
    def op_put(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        dest = self._inside(header.get("dest", "."))
        self._check_space(int(header.get("bytes", 0)), int(header.get("files", 0)))
        self._send(encode_frame({"ok": True, "go": True}))
        reader = ChunkReader(self.receiver)
        created: list[str] = []
        try:
            files = self._extract(reader, dest, created)
        except BaseException:
            for target in reversed(created):  # no half-written upload stays behind
                with contextlib.suppress(OSError):
                    os.unlink(target)
            reader.drain()
            raise
        end = reader.drain()
        if end.get("abort"):
            for target in reversed(created):
                with contextlib.suppress(OSError):
                    os.unlink(target)
            raise ValueError(f"the host gave up the upload: {end['abort']}")
        return {"files": files}, b""

    def _check_space(self, size: int, files: int) -> None:
        info = os.statvfs(self.workspace)
        free = info.f_bavail * info.f_frsize
        needed = size + files * info.f_frsize  # each file's last block, at worst
        where, fix = "the workspace has", "workspace_size"
        headroom = memory_headroom() if self.use_cgroup and on_tmpfs(self.workspace) else None
        if headroom is not None and headroom < free:  # a tmpfs's pages are the sandbox's memory
            free, where, fix = (
                headroom,
                "the sandbox's memory (its workspace is a tmpfs) has",
                "memory",
            )
        if needed > free:
            raise NoSpaceError(
                f"the upload needs {_human(needed)} ({files} files) but {where} "
                f"{_human(free)} free; raise {fix} in the sandbox spec"
            )

    def _extract(self, reader: ChunkReader, dest: str, created: list[str]) -> int:
        import tarfile

        files = 0
        stream: Any = reader  # file-like enough for tarfile's stream mode
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                check_tar_member(member)
                target = self._inside(os.path.join(dest, member.name))
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                if not os.path.lexists(target):
                    created.append(target)
                with open(target, "wb") as handle:
                    while chunk := source.read(CHUNK_BYTES):
                        handle.write(chunk)
                os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
                files += 1
        return files

    def op_get(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._inside(header["path"])
        if not os.path.lexists(root):
            raise FileNotFoundError(f"{os.path.relpath(root, self.workspace)} does not exist")
        folder = os.path.isdir(root)
        top = os.open(root if folder else os.path.dirname(root), DIR_FLAGS)
        self._send(encode_frame({"ok": True, "stream": True}))
        writer = ChunkWriter(self._send)
        files = 0
        try:
            if folder:
                entries = walk_files(top)
            else:
                entries = iter([(os.path.basename(root), top, os.path.basename(root), False)])
            for arcname, dir_fd, name, _ in entries:
                files += _write_member(writer, arcname, dir_fd, name)
            writer.write(bytes(2 * 512))  # the end-of-archive marker
            writer.flush()
        finally:
            os.close(top)
        return {"files": files}, b""

    def op_manifest(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        root = self._inside(header.get("path", "."))
        builder = ManifestBuilder(int(header["limit"]))
        relative = os.path.relpath(root, self.workspace)
        if os.path.isdir(root):
            fd = os.open(root, DIR_FLAGS)
            try:
                builder.add_tree(fd, "" if root == self.workspace else relative + "/")
            finally:
                os.close(fd)
        elif os.path.lexists(root):
            fd = os.open(os.path.dirname(root), DIR_FLAGS)
            try:
                builder.add(relative, fd, os.path.basename(root))
            finally:
                os.close(fd)
        else:
            raise FileNotFoundError(f"{relative} does not exist")
        return builder.reply()


def _write_member(writer: ChunkWriter, arcname: str, dir_fd: int, name: str) -> int:
    """Write ``name`` as a tar member (header, data, padding) if it is a regular file reached
    without a link; 1 if it was written."""
    import stat
    import tarfile

    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:  # a link (ELOOP), a socket or a file removed meanwhile is not sent
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
            return 0
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return 0
        member = tarfile.TarInfo(arcname)
        member.size = info.st_size
        member.mode = 0o755 if info.st_mode & 0o111 else 0o644
        member.mtime = int(info.st_mtime)
        writer.write(member.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape"))
        left = info.st_size
        while left:
            chunk = handle.read(min(left, CHUNK_BYTES))
            if not chunk:
                raise OSError(errno.EIO, f"{arcname} shrank while it was read")
            writer.write(chunk)
            left -= len(chunk)
        writer.write(bytes(-info.st_size % 512))
    return 1


def _human(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"
