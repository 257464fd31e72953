"""scripts/as-root.sh: as root a set-up script just runs (no sudo needed, as on a root-only
machine); as another user it re-runs itself with sudo, or says to run it as root when there
is no sudo. A fake `sudo` on PATH records what it was asked."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scripts() -> Iterator[Path]:
    # world-readable (not pytest's 0700 tmp_path), so another user can run the script
    folder = Path(tempfile.mkdtemp(prefix="as-root-test-"))
    try:
        folder.chmod(0o755)
        (folder / "scripts").mkdir(mode=0o755)
        shutil.copy(REPO / "scripts" / "as-root.sh", folder / "scripts" / "as-root.sh")
        demo = folder / "scripts" / "demo.sh"
        demo.write_text(
            '#!/usr/bin/env bash\nset -euo pipefail\nsource "$(dirname "$0")/as-root.sh"\n'
            'echo "ran as $EUID with $*"\n'
        )
        (folder / "bin").mkdir(mode=0o755)
        sudo = folder / "bin" / "sudo"
        sudo.write_text('#!/bin/sh\necho "sudo $*"\n')
        for path in (demo, sudo, folder / "scripts" / "as-root.sh"):
            path.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)


def _run(folder: Path, *, with_sudo: bool, user: str | None) -> subprocess.CompletedProcess[str]:
    path = f"{folder / 'bin'}:/usr/bin:/bin" if with_sudo else "/usr/bin:/bin"
    command = ["bash", str(folder / "scripts" / "demo.sh"), "a", "b"]
    if user is not None:  # as root: become another user to see the non-root path
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(
        command, capture_output=True, text=True, check=False, env={"PATH": path}, timeout=30
    )


def test_as_root_runs_without_sudo(scripts: Path) -> None:
    if os.geteuid() != 0:
        done = _run(scripts, with_sudo=True, user=None)
        assert done.stdout.startswith("sudo --preserve-env=") and "demo.sh a b" in done.stdout
        return
    done = _run(scripts, with_sudo=False, user=None)
    assert done.returncode == 0 and done.stdout == "ran as 0 with a b\n"


def test_not_root_reruns_with_sudo_or_says_so(scripts: Path) -> None:
    user = "65534" if os.geteuid() == 0 else None
    done = _run(scripts, with_sudo=True, user=user)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"sudo --preserve-env=PYTHON,EXECLOOP_DOCKERD_LOG {scripts}/scripts/demo.sh a b\n"
    )
    done = _run(scripts, with_sudo=False, user=user)
    assert done.returncode == 1 and "run me as root (there is no sudo here)" in done.stderr
