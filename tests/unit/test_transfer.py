from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from execloop.errors import TransferError
from execloop.sandboxes import transfer


def _tar(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_member("../escape"), "traversal"),
        (_member("a/../../escape"), "traversal"),
        (_member("/etc/passwd"), "absolute"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "links"),
        (_member("hard", tarfile.LNKTYPE, "../x"), "links"),
        (_member("dev", tarfile.CHRTYPE), "devices"),
        (_member("fifo", tarfile.FIFOTYPE), "fifos"),
    ],
)
def test_unsafe_entries_are_refused(member: tarfile.TarInfo, reason: str, tmp_path: Path) -> None:
    archive = _tar(member)
    with pytest.raises(TransferError, match=reason):
        transfer.check_archive(archive)
    with pytest.raises(TransferError):
        transfer.extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_garbage_is_not_a_tar() -> None:
    with pytest.raises(TransferError, match="not an uncompressed tar"):
        transfer.check_archive(b"definitely not a tar archive" * 40)


def test_mapping_roundtrip(tmp_path: Path) -> None:
    archive = transfer.tar_from_mapping({"a/b.txt": "hello", "c.bin": b"\x00\x01"})
    written = transfer.extract_tar(archive, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == ["a/b.txt", "c.bin"]
    assert (tmp_path / "a/b.txt").read_text() == "hello"


def test_mapping_with_traversal_name_is_refused() -> None:
    with pytest.raises(TransferError, match="traversal"):
        transfer.tar_from_mapping({"../x": "no"})


def test_directory_upload_skips_links(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "f.txt").write_text("ok")
    (source / "link").symlink_to("/etc/passwd")
    names = [m.name for m in transfer.check_archive(transfer.tar_from_path(source))]
    assert names == ["sub", "sub/f.txt"]


def test_single_file_needs_exactly_one_file() -> None:
    archive = transfer.tar_from_mapping({"a": "1", "b": "2"})
    with pytest.raises(TransferError, match="single regular file"):
        transfer.single_file(archive, "dir")
    assert transfer.single_file(transfer.tar_from_mapping({"a": "1"}), "a") == b"1"
