"""Temp dirs name their owner; the ones of a dead owner are found as orphans, live ones never."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from execloop.sandboxes.tempdirs import make_temp_dir, orphaned_temp_dirs, remove_temp_dir


def test_a_live_owners_dir_is_not_an_orphan() -> None:
    path = make_temp_dir("control")
    try:
        assert f"-{os.getpid()}." in path.name
        assert path.stat().st_mode & 0o777 == 0o700
        assert path not in orphaned_temp_dirs(path.parent)
    finally:
        remove_temp_dir(path)
    assert not path.exists()


def test_a_dead_owners_dir_is_an_orphan(tmp_path: Path) -> None:
    code = (  # its janitor is killed first, or it would remove the dir as its owner exits
        "import os, tempfile; tempfile.tempdir = os.environ['ROOT'];"
        "from execloop.sandboxes import janitor;"
        "from execloop.sandboxes.tempdirs import make_temp_dir;"
        "print(make_temp_dir('state')); os.kill(janitor.janitor_pid(), 9)"
    )
    made = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = Path(made.stdout.strip())
    (tmp_path / "execloop-unrelated").mkdir()  # not our naming scheme: never touched
    (tmp_path / f"execloop-state-{os.getpid()}.1-abc").mkdir()  # pid alive, other start time
    found = orphaned_temp_dirs(tmp_path)
    assert orphan in found
    assert tmp_path / f"execloop-state-{os.getpid()}.1-abc" in found
    assert tmp_path / "execloop-unrelated" not in found


def test_an_owner_that_exits_without_removing_its_dir_leaves_none(tmp_path: Path) -> None:
    code = (
        "import os, tempfile; tempfile.tempdir = os.environ['ROOT'];"
        "from execloop.sandboxes.tempdirs import make_temp_dir;"
        "print(make_temp_dir('state'))"
    )
    made = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    left = Path(made.stdout.strip())
    deadline = time.monotonic() + 30  # its janitor removes it as soon as it sees the owner gone
    while left.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left.exists()
