"""The README's "Executors for agent frameworks" examples run as written (each framework's
own test model, the local backend), in a fresh interpreter, and print what their comments
promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Executors for agent frameworks"


def _example(heading: str) -> str:
    """The python block under ``### heading`` in the executors section."""
    section = README.read_text(encoding="utf-8").split(f"\n{SECTION}\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    part = section.split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", part, re.DOTALL | re.MULTILINE)
    assert found, f"no python block under {heading!r}"
    return found.group(1)


@pytest.mark.parametrize("heading", ["AutoGen", "smolagents", "LangGraph", "OpenAI Agents SDK"])
def test_example_runs_as_written(heading: str, tmp_path: Path) -> None:
    code = _example(heading)
    promised = re.findall(r"print\(.*\)\s+# (.+)$", code, re.MULTILINE)
    assert promised, "the example says what it prints"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines() == promised
