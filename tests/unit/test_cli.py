from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _execloop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_help_lists_the_commands() -> None:
    done = _execloop("--help")
    assert done.returncode == 0
    for command in ("run", "doctor", "images", "reap"):
        assert command in done.stdout


def test_bad_memory_says_which_option_and_what_is_expected(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)")
    done = _execloop("run", str(script), "--memory", "lots")
    assert done.returncode == 2
    assert "--memory" in done.stderr and "expected a size" in done.stderr


def test_missing_script_is_a_usage_error(tmp_path: Path) -> None:
    done = _execloop("run", str(tmp_path / "absent.py"))
    assert done.returncode == 2
    assert "does not exist" in done.stderr
