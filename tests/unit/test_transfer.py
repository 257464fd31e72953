from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from execloop.errors import ConfigError, TransferError
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


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a\0b", "NUL byte"),
        ("x" * 256, "at most 255"),
        ("d/" * 2100, "at most 4095"),
        ("\ud800", "cannot be encoded"),
        (42, "must be a str, not int"),
    ],
)
def test_names_a_file_system_cannot_hold_are_refused(name: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        transfer.check_name(name)
    with pytest.raises(ConfigError, match=message):
        transfer.tar_from_mapping({name: "x"})  # type: ignore[dict-item]


def test_mapping_contents_must_be_bytes_or_text() -> None:
    with pytest.raises(ConfigError, match="must be bytes or str, not int"):
        transfer.tar_from_mapping({"x": 42})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="mapping, not str"):
        transfer.tar_from_mapping("x")  # type: ignore[arg-type]
    archive = transfer.tar_from_mapping({"a": bytearray(b"12"), "b": memoryview(b"3")})
    assert transfer.single_file(transfer.tar_from_mapping({"a": bytearray(b"12")}), "a") == b"12"
    assert [m.size for m in transfer.check_archive(archive)] == [2, 1]


def _tree(root: Path) -> Path:
    (root / "sub" / "empty").mkdir(parents=True)
    (root / "sub" / "b.bin").write_bytes(b"\x00" * 5000)
    (root / "a.sh").write_text("run")
    (root / "a.sh").chmod(0o755)
    (root / "link").symlink_to("/etc/passwd")
    (root / "sub" / "dirlink").symlink_to(root.parent)
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.anyio
async def test_streamed_tar_equals_what_tarfile_reads(tmp_path: Path) -> None:
    source = _tree(tmp_path / "src")
    streamed = b"".join([chunk async for chunk in transfer.tar_chunks(source)])
    members = transfer.check_archive(streamed)
    assert [(m.name, m.size, oct(m.mode)) for m in members] == [
        ("a.sh", 3, "0o755"),
        ("sub", 0, "0o755"),
        ("sub/b.bin", 5000, "0o644"),
        ("sub/empty", 0, "0o755"),
    ]
    assert transfer.tar_from_path(source) == transfer.tar_from_path(source)  # deterministic
    assert transfer.measure_path(source) == (2, 5003)
    written = transfer.extract_tar(streamed, tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "b.bin").read_bytes() == b"\x00" * 5000
    assert len(written) == 2


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_special_files_are_never_read(tmp_path: Path, special: str) -> None:
    source = Path(special)
    if special == "fifo":
        source = tmp_path / "fifo"
        os.mkfifo(source)
    with pytest.raises(TransferError, match="neither a regular file nor a folder"):
        transfer.measure_path(source)
    with pytest.raises(TransferError, match="neither a regular file nor a folder"):
        transfer.tar_from_path(source)


def test_a_missing_host_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="does not exist on the host"):
        transfer.measure_path(tmp_path / "missing")


def test_archives_are_read_from_spooled_files(tmp_path: Path) -> None:
    with (tmp_path / "spool").open("w+b") as spool:
        spool.write(transfer.tar_from_mapping({"only": "1"}))
        assert transfer.single_file(spool, "only") == b"1"
        assert [p.name for p in transfer.extract_tar(spool, tmp_path / "x")] == ["only"]
