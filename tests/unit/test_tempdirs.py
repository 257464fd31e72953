"""Temp dirs name their owner; the ones of a dead owner are found as orphans, live ones never."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest

from execloop.errors import ConfigError
from execloop.sandboxes import tempdirs
from execloop.sandboxes.channel import private_unix_listener
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


def test_socket_folders_leave_a_long_temp_dir_for_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a temp dir too long for Unix socket paths (108 bytes), a folder for sockets is
    made in /tmp, where a socket really binds through the staging folder; others stay put, and
    the reaper looks in both places."""
    long_root = tmp_path / ("x" * 60)
    long_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_root))
    plain = make_temp_dir("state")
    sockets = make_temp_dir("control", sockets=True)
    try:
        assert plain.parent == long_root
        assert sockets.parent == Path("/tmp")

        async def bind() -> None:
            listener = await private_unix_listener(sockets / "tools.sock", owner=None)
            await listener.aclose()

        anyio.run(bind)
        assert (sockets / "tools.sock").is_socket()
        assert {plain, sockets} <= set(_all_ours())
    finally:
        remove_temp_dir(plain)
        remove_temp_dir(sockets)


def test_a_temp_dir_too_long_even_for_tmp_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", "/" + "y" * 90)
    monkeypatch.setattr(tempdirs, "_SHORT_ROOT", "/" + "z" * 90)
    with pytest.raises(ConfigError, match="set TMPDIR to a folder of at most"):
        make_temp_dir("control", sockets=True)


def _all_ours() -> list[Path]:
    """Every execloop folder in the places the reaper looks (live owners' included)."""
    return [
        Path(entry.path)
        for root in tempdirs._roots()
        for entry in os.scandir(root)
        if entry.name.startswith(tempdirs.PREFIX)
    ]
