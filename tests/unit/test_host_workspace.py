"""A host workspace directory: one run at a time, nothing overwritten, no system directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from execloop.errors import ConfigError
from execloop.runtime.host_workspace import HostWorkspace, check_workspace_dir
from execloop.runtime.inputs import Inputs

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("path", ["/", "/etc", "/usr", "/usr/local/lib", "/tmp", "/var/lib/x"])
def test_system_directories_are_refused_with_advice_to_use_ones_own(path: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_workspace_dir(Path(path))
    message = str(refused.value)
    assert message.startswith(f"workspace {path} is a system directory")
    assert "use a directory of your own" in message and "chown" not in message


def test_the_home_directory_itself_is_refused_but_folders_in_it_are_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="system directory"):
        check_workspace_dir(Path.home())
    check_workspace_dir(tmp_path / "ws")
    check_workspace_dir(Path.home() / "ws")


def test_a_second_claim_is_refused_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path\n"
            "from execloop.runtime.host_workspace import HostWorkspace\n"
            f"with HostWorkspace.claim(Path({str(tmp_path)!r})):\n"
            "    print('held', flush=True); sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError) as refused, HostWorkspace.claim(tmp_path):
            pass
        assert str(refused.value).startswith(
            f"workspace {tmp_path} is in use by another execloop run (pid {holder.pid}: "
        )
        assert f"{sys.executable} -c import sys;" in str(refused.value)  # its command line
        assert "\n" not in str(refused.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    # released when the holder ended; a second claim in the same process is refused too
    with (
        HostWorkspace.claim(tmp_path),
        pytest.raises(ConfigError, match="in use by another execloop run"),
        HostWorkspace.claim(tmp_path),
    ):
        pass


def test_the_script_name_must_be_free_and_is_removed_after_the_run(tmp_path: Path) -> None:
    with HostWorkspace.claim(tmp_path) as claim:
        claim.reserve("main.py")
        (tmp_path / "main.py").write_text("print('the run wrote this')")
    assert not (tmp_path / "main.py").exists()
    (tmp_path / "main.py").write_text("the user's own")
    with pytest.raises(ConfigError) as refused, HostWorkspace.claim(tmp_path) as claim:
        claim.reserve("main.py")
    assert str(refused.value) == (
        f"{tmp_path}/main.py exists; execloop will not overwrite it: move it or choose another "
        "workspace directory"
    )
    assert (tmp_path / "main.py").read_text() == "the user's own"


async def test_inputs_may_exist_only_with_the_same_bytes(tmp_path: Path) -> None:
    source = tmp_path / "src" / "data"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.csv").write_text("1,2\n")
    workspace = tmp_path / "ws"
    (workspace / "data" / "sub").mkdir(parents=True)
    inputs = Inputs.collect([source])
    async with inputs.staged() as staged:
        with HostWorkspace.claim(workspace) as claim:
            claim.refuse_overwriting_inputs(inputs, staged.folder)  # absent: fine
            (workspace / "data" / "sub" / "a.csv").write_text("1,2\n")
            claim.refuse_overwriting_inputs(inputs, staged.folder)  # identical: fine
            (workspace / "data" / "sub" / "a.csv").write_text("1,2\nedited\n")
            with pytest.raises(ConfigError, match=r"ws/data/sub/a\.csv exists; execloop will"):
                claim.refuse_overwriting_inputs(inputs, staged.folder)
            (workspace / "data" / "sub" / "a.csv").unlink()
            (workspace / "data" / "sub" / "a.csv").symlink_to("/etc/passwd")
            with pytest.raises(ConfigError, match=r"ws/data/sub/a\.csv exists"):
                claim.refuse_overwriting_inputs(inputs, staged.folder)
            claim.refuse_overwrite("notes.txt", b"x")
            (workspace / "notes.txt").write_text("y")
            with pytest.raises(ConfigError, match=r"ws/notes\.txt exists"):
                claim.refuse_overwrite("notes.txt", b"x")
