"""README examples that need no Docker run as written, in a fresh interpreter with no Docker
daemon reachable; the output their comments promise is the output they print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_block(heading: str) -> str:
    """The first python block under the README heading ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, f"no python block under {heading!r}"
    return found.group(1)


def test_testing_without_docker_runs_as_written(tmp_path: Path) -> None:
    code = _python_block("### Testing without Docker")
    promised = re.search(r"# (passed .*)$", code.strip().splitlines()[-1])
    assert promised, "the example's last line says what it prints"
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == promised.group(1)
