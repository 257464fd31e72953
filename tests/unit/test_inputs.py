"""The input layout: one walk decides names, refusals and sizes; the staged copy, the prompt
listing and the restore all come from it. Real files, links, fifos and sockets on the host."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from execloop.errors import ConfigError
from execloop.runtime.host_files import read_script
from execloop.runtime.inputs import SCRIPT_NAME, Inputs
from execloop.runtime.task import Task
from execloop.sandboxes import SandboxSpec

pytestmark = pytest.mark.anyio


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """``data/`` with a nested file, a top file and an empty directory."""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "sub" / "a.csv").write_text("x,y\n1,2\n")
    (root / "top.txt").write_text("hello\n")
    return root


def _staged_tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text() if p.is_file() else "<dir>"
        for p in sorted(folder.rglob("*"))
    }


async def test_a_directory_lands_as_dirname_with_nested_paths_and_a_file_as_its_name(
    data: Path, tmp_path: Path
) -> None:
    single = tmp_path / "notes.md"
    single.write_text("# notes\n")
    inputs = Inputs.collect([data, single])
    assert [f.name for f in inputs.files] == ["data/sub/a.csv", "data/top.txt", "notes.md"]
    assert inputs.dirs == ("data", "data/empty", "data/sub")
    assert inputs.names == ("data", "notes.md")
    async with inputs.staged() as staged:
        assert staged.folder is not None
        assert _staged_tree(staged.folder) == {
            "data": "<dir>",
            "data/empty": "<dir>",
            "data/sub": "<dir>",
            "data/sub/a.csv": "x,y\n1,2\n",
            "data/top.txt": "hello\n",
            "notes.md": "# notes\n",
        }
        folder = staged.folder
    assert not folder.exists()  # removed after use


async def test_the_prompt_lists_the_same_names_with_sizes_and_first_lines(data: Path) -> None:
    (data / "blob.bin").write_bytes(b"\x00\xff\x00binary")
    listing = Inputs.collect([data]).describe()
    assert "- data/sub/a.csv (8 bytes)\n    | x,y\n    | 1,2" in listing
    assert "- data/blob.bin (9 bytes)\n    (binary)" in listing
    assert "- data/top.txt (6 bytes)" in listing
    assert Inputs.collect([]).describe() == "Input files: none."


def test_the_prompt_summarises_past_fifty_files(tmp_path: Path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for i in range(60):
        (many / f"f{i:02}.txt").write_text("1234")
    listing = Inputs.collect([many]).describe()
    assert listing.count("\n- many/") == 50
    assert "- … 10 more files under many/ (40 bytes)" in listing


def test_a_link_inside_the_input_is_copied_as_its_target(data: Path) -> None:
    (data / "alias.csv").symlink_to("sub/a.csv")
    (inputs_file,) = [f for f in Inputs.collect([data]).files if f.name == "data/alias.csv"]
    with os.fdopen(inputs_file.open(), "rb") as handle:
        assert handle.read() == b"x,y\n1,2\n"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/etc/shadow", "data/x is a symbolic link to /etc/shadow (/etc/shadow), outside data"),
        ("../../secret", "data/x is a symbolic link to ../../secret"),
        ("sub", "data/x is a symbolic link to sub, which is a directory"),
        ("missing.txt", "data/x is a symbolic link to missing.txt, which does not exist"),
    ],
)
def test_links_that_leave_the_input_or_reach_no_file_are_refused(
    data: Path, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    (data.parent / "secret").write_text("host secret")
    (data / "x").symlink_to(target)
    monkeypatch.chdir(data.parent)
    with pytest.raises(ConfigError) as refused:
        Inputs.collect([Path("data")])
    assert str(refused.value).startswith(message), refused.value


def test_a_link_named_by_the_user_is_followed_and_keeps_its_name(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere" / "real.csv"
    real.parent.mkdir()
    real.write_text("1\n")
    link = tmp_path / "mine.csv"
    link.symlink_to(real)
    (item,) = Inputs.collect([link]).files
    assert item.name == "mine.csv" and item.size == 2
    assert Task(goal="g", inputs=(link,)).inputs == (link,)  # not resolved: the name stays


def test_fifos_sockets_and_devices_are_refused_by_name_never_opened(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo(data / "sub" / "p")
    with pytest.raises(ConfigError, match=r"^data/sub/p is a fifo; only regular files and "):
        Inputs.collect([Path("data")])
    os.unlink(data / "sub" / "p")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(data / "s"))
        with pytest.raises(ConfigError, match=r"^data/s is a socket; only regular files"):
            Inputs.collect([Path("data")])
    os.mkfifo(tmp_path / "top-fifo")
    with pytest.raises(ConfigError, match=r"^top-fifo is a fifo; only regular files"):
        Inputs.collect([Path("top-fifo")])
    with pytest.raises(ConfigError, match=r"^/dev/zero is a character device; only regular"):
        Inputs.collect([Path("/dev/zero")])


def test_collisions_name_both_inputs(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.csv").write_text(folder)
    first, second = tmp_path / "a" / "x.csv", tmp_path / "b" / "x.csv"
    with pytest.raises(ConfigError) as refused:
        Inputs.collect([first, second])
    assert str(refused.value) == (
        f"inputs {first} and {second} would both land as 'x.csv' in the workspace; rename one, "
        "or put them in one directory and pass that"
    )
    (tmp_path / SCRIPT_NAME).write_text("print(1)")
    with pytest.raises(ConfigError, match=r"would land as main\.py, the name execloop reserves"):
        Inputs.collect([tmp_path / SCRIPT_NAME])
    with pytest.raises(ValidationError, match=r"would both land as 'x\.csv'"):
        Task(goal="g", inputs=(first, second))


def test_too_many_files_are_refused_before_anything_is_copied(tmp_path: Path) -> None:
    for i in range(10):
        (tmp_path / f"f{i}").write_text("")
    with pytest.raises(ConfigError, match="the inputs hold more than 5 files and directories"):
        Inputs.collect([tmp_path], max_files=5)


def test_inputs_larger_than_the_workspace_are_refused_by_their_sizes(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:  # sparse: the size is real, the disk is not used
        handle.truncate(600 * 1024**2)
    inputs = Inputs.collect([big])
    with pytest.raises(ConfigError, match=r"the inputs total 629\.1 MB \(largest: .*big\.bin"):
        inputs.check_fits(SandboxSpec())
    inputs.check_fits(SandboxSpec(workspace_size="1g"))


async def test_a_file_that_changes_after_collection_is_refused_not_half_copied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "moving.txt"
    path.write_text("short")
    inputs = Inputs.collect([path])
    path.write_text("much longer now")
    with pytest.raises(ConfigError, match=r"moving\.txt changed while being read"):
        async with inputs.staged():
            pass


async def test_a_file_replaced_by_a_link_after_collection_is_never_followed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "f").write_text("12345")
    inputs = Inputs.collect([folder])
    (folder / "f").unlink()
    (folder / "f").symlink_to("/etc/hostname")
    with pytest.raises(ConfigError, match="d/f changed while being read"):
        async with inputs.staged():
            pass


def test_prune_conflicts_makes_room_for_the_inputs(data: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    (outputs / "data" / "sub" / "a.csv").mkdir(parents=True)  # a folder where a file was
    (outputs / "data" / "new.txt").write_text("kept")
    Inputs.collect([data]).prune_conflicts(outputs)
    assert not (outputs / "data" / "sub" / "a.csv").exists()
    assert (outputs / "data" / "new.txt").read_text() == "kept"
    other = tmp_path / "outputs2"
    other.mkdir()
    (other / "data").write_text("a file where the input has a folder")
    Inputs.collect([data]).prune_conflicts(other)
    assert not (other / "data").exists()


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "script-fifo"
    os.mkfifo(path)
    return path


def test_read_script_refuses_what_is_not_a_bounded_regular_file(tmp_path: Path, fifo: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_bytes(b"# coding: latin-1\nprint('\xe9')\n")
    assert read_script(script) == b"# coding: latin-1\nprint('\xe9')\n"
    with pytest.raises(ConfigError, match="script-fifo is a fifo; give a Python file"):
        read_script(fifo)  # opened without blocking, refused without reading
    with pytest.raises(ConfigError, match="/dev/zero is a character device"):
        read_script(Path("/dev/zero"))
    with pytest.raises(ConfigError, match="is a directory"):
        read_script(tmp_path)
    big = tmp_path / "big.py"
    with big.open("wb") as handle:
        handle.truncate(5 * 1024**2)
    with pytest.raises(ConfigError, match=r"has 5\.2 MB; scripts are limited to 4\.2 MB"):
        read_script(big)
    with pytest.raises(ConfigError, match=r"cannot read the script .*nope\.py"):
        read_script(tmp_path / "nope.py")
