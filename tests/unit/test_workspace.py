"""Host-side workspace operations refuse whatever the sandbox planted (no Docker)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from execloop.errors import ConfigError, TransferError
from execloop.sandboxes import transfer
from execloop.sandboxes.workspace import Workspace


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "secret").write_text("host secret")
    return folder


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    return Workspace(root)


def test_files_in_and_out(workspace: Workspace) -> None:
    workspace.extract(transfer.tar_from_mapping({"in/a.txt": "1", "run.sh": "x"}), "data")
    assert (workspace.root / "data" / "in" / "a.txt").read_text() == "1"
    manifest = workspace.manifest()
    assert [a.path for a in manifest.files] == ["data/in/a.txt", "data/run.sh"]
    assert (manifest.total_files, manifest.total_bytes, manifest.truncated) == (2, 2, False)
    with tarfile.open(fileobj=io.BytesIO(workspace.tar("data/in", max_bytes=1 << 20))) as tar:
        assert tar.getnames() == ["a.txt"]
    single = workspace.tar("data/run.sh", max_bytes=1 << 20)
    assert transfer.single_file(single, "data/run.sh") == b"x"
    assert workspace.regular_file("./data//run.sh") == "data/run.sh"


def test_links_are_never_followed(workspace: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret", workspace.root / "leak")
    os.symlink(outside, workspace.root / "dir")
    for relative in ("leak", "dir", "dir/secret"):
        with pytest.raises(TransferError, match="symbolic link"):
            workspace.tar(relative, max_bytes=1 << 20)
    with pytest.raises(TransferError, match="symbolic link"):
        workspace.write("dir/new.txt", b"x")
    with pytest.raises(TransferError, match="link"):
        workspace.write("leak", b"overwritten")
    with pytest.raises(TransferError, match="symbolic link"):
        workspace.regular_file("leak")
    assert workspace.manifest().total_files == 0  # links are not artifacts
    assert (outside / "secret").read_text() == "host secret"
    assert sorted(os.listdir(outside)) == ["secret"]


def test_a_hard_link_is_not_written_through(workspace: Workspace, outside: Path) -> None:
    os.link(outside / "secret", workspace.root / "linked")
    with pytest.raises(TransferError, match="hard link"):
        workspace.write("linked", b"overwritten")
    assert (outside / "secret").read_text() == "host secret"


def test_fifos_are_skipped_not_opened(workspace: Workspace) -> None:
    os.mkfifo(workspace.root / "pipe")
    (workspace.root / "file").write_text("x")
    assert [a.path for a in workspace.manifest().files] == ["file"]
    with pytest.raises(TransferError):
        workspace.regular_file("pipe")


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b"])
def test_traversal_is_refused(workspace: Workspace, bad: str) -> None:
    with pytest.raises(TransferError):
        workspace.write(bad, b"x")
    with pytest.raises(TransferError):
        workspace.tar(bad, max_bytes=1 << 20)


def test_new_names_never_overwrite(workspace: Workspace) -> None:
    first = workspace.write_new("outputs", "exec-001-0", ".png", b"a")
    second = workspace.write_new("outputs", "exec-001-0", ".png", b"b")
    assert (first, second) == ("outputs/exec-001-0.png", "outputs/exec-001-0-1.png")
    assert (workspace.root / second).read_bytes() == b"b"


def test_downloads_are_capped(workspace: Workspace) -> None:
    workspace.write("big", b"x" * 2048)
    with pytest.raises(TransferError, match="larger than"):
        workspace.tar(".", max_bytes=1024)


def test_manifest_is_bounded_sorted_and_counts_everything(workspace: Workspace) -> None:
    names = ["a-b", "a.txt", "a/x", "ab", "b/c/d", "z"]
    for index, name in enumerate(names):
        workspace.write(name, b"x" * index)
    full = workspace.manifest()
    assert [a.path for a in full.files] == sorted(names)
    assert (full.total_files, full.total_bytes) == (6, sum(range(6)))
    bounded = workspace.manifest(limit=2)
    assert [a.path for a in bounded.files] == sorted(names)[:2]
    assert (bounded.total_files, bounded.total_bytes, bounded.truncated) == (6, 15, True)
    assert bounded.summary() == "6 files, 15 B (first 2 listed)"
    assert workspace.manifest("b").files[0].path == "b/c/d"
    assert workspace.manifest("a/x").total_files == 1


@pytest.mark.parametrize("limit", [-1, 100_001, 1.5, True, "10"])
def test_manifest_limit_is_checked(workspace: Workspace, limit: object) -> None:
    with pytest.raises(ConfigError, match="manifest limit"):
        workspace.manifest(limit=limit)  # type: ignore[arg-type]


def test_host_folders_are_copied_in_and_out_in_chunks(workspace: Workspace, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "big.bin").write_bytes(os.urandom(3 << 20))
    (source / "tool").write_text("#!/bin/sh\n")
    (source / "tool").chmod(0o755)
    (source / "link").symlink_to("/etc/passwd")
    workspace.copy_in(source, "in")
    assert [a.path for a in workspace.manifest().files] == ["in/sub/big.bin", "in/tool"]
    assert os.stat(workspace.root / "in" / "tool").st_mode & 0o777 == 0o755
    copied = workspace.copy_out("in", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in copied) == [
        "sub/big.bin",
        "tool",
    ]
    assert (tmp_path / "out" / "sub" / "big.bin").read_bytes() == (
        source / "sub" / "big.bin"
    ).read_bytes()
    assert workspace.read("in/tool") == b"#!/bin/sh\n"
    with pytest.raises(TransferError, match="not a single regular file"):
        workspace.read("in/sub")


def test_an_upload_larger_than_the_free_space_is_refused_first(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    huge = tmp_path_factory.mktemp("host") / "huge.bin"
    with huge.open("wb") as handle:
        handle.truncate(1 << 43)  # sparse
    with pytest.raises(TransferError, match=r"needs .* free"):
        workspace.copy_in(huge)
    assert workspace.manifest().total_files == 0
