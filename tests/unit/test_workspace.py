"""Host-side workspace operations refuse whatever the sandbox planted (no Docker)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from execloop.errors import TransferError
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
    assert [a.path for a in manifest] == ["data/run.sh", "data/in/a.txt"]
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
    assert workspace.manifest() == []  # links are not artifacts
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
    assert [a.path for a in workspace.manifest()] == ["file"]
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
