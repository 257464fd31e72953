"""Host side of file transfer: tar archives built and checked here, extracted safely.

Both directions are checked: an upload is refused before it leaves the host, and a download
is checked again before extraction, because a sandbox's output is untrusted.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from execloop.errors import TransferError
from execloop.sandboxes.helper import TarRefusedError, check_tar_member

__all__ = [
    "check_archive",
    "extract_tar",
    "single_file",
    "tar_from_mapping",
    "tar_from_path",
]


def _open(archive: bytes) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=io.BytesIO(archive), mode="r:")
    except tarfile.TarError as exc:
        raise TransferError(f"not an uncompressed tar archive: {exc}") from exc


def check_archive(archive: bytes) -> list[tarfile.TarInfo]:
    """Every member of ``archive``, or ``TransferError`` naming the first unsafe entry."""
    with _open(archive) as tar:
        members = tar.getmembers()
    try:
        for member in members:
            check_tar_member(member)
    except TarRefusedError as exc:
        raise TransferError(str(exc)) from exc
    return members


def tar_from_mapping(files: Mapping[str, bytes | str]) -> bytes:
    """A tar of ``{relative name: content}``; names are checked like any upload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(str(PurePosixPath(name)))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    check_archive(archive)
    return archive


def tar_from_path(source: Path) -> bytes:
    """A tar of a host file (stored under its name) or of a directory's contents."""
    if not source.exists():
        raise TransferError(f"{source} does not exist on the host")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        if source.is_file():
            tar.add(source, arcname=source.name, recursive=False)
        else:
            for path in sorted(source.rglob("*")):
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    continue  # links and special files never cross into a sandbox
                tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False)
    return buffer.getvalue()


def extract_tar(archive: bytes, dest: Path) -> list[Path]:
    """Extract a checked archive under ``dest``; returns the files written."""
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
            target.write_bytes(source.read())
            written.append(target)
    return written


def single_file(archive: bytes, path: str) -> bytes:
    """The content of the only regular file in ``archive`` (what ``read_file`` asked for)."""
    files = [member for member in check_archive(archive) if member.isfile()]
    if len(files) != 1:
        raise TransferError(f"{path!r} is not a single regular file in the workspace")
    with _open(archive) as tar:
        source = tar.extractfile(files[0])
        if source is None:
            raise TransferError(f"{path!r} has no data")
        return source.read()
