"""`execloop run`/`task` on each real backend the registry offers: --backend and --placement
reach the sandbox, --out brings the workspace back (a jupyter workspace download of "."
included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHOICES = [("docker", None), ("local", None), ("jupyter", "bubblewrap"), ("jupyter", "docker")]


def _execloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _choice(backend: str, placement: str | None) -> list[str]:
    return ["--backend", backend, *(["--placement", placement] if placement else [])]


@pytest.mark.parametrize(("backend", "placement"), CHOICES)
def test_run_out_on_each_backend(backend: str, placement: str | None, tmp_path: Path) -> None:
    script = REPO / "examples" / "agent_script.py"
    done = _execloop("run", str(script), *_choice(backend, placement), "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reading the built-in sample")
    assert (tmp_path / "out" / "main.py").read_bytes() == script.read_bytes()
    assert json.loads((tmp_path / "out" / "result.json").read_text())["rows_out"] == 3


@pytest.mark.parametrize(("backend", "placement"), [("local", None), ("jupyter", "bubblewrap")])
def test_task_out_on_a_backend(backend: str, placement: str | None, tmp_path: Path) -> None:
    script = 'import json\njson.dump({"rows": 3}, open("result.json", "w"))\n'
    (tmp_path / "replies.yaml").write_text(yaml.safe_dump([{"script": script}]))
    done = _execloop(
        "task", "Write rows", "--check", 'result["rows"] == 3', "--model", "scripted:replies.yaml",
        *_choice(backend, placement), "--out", "kept", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "passed"
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["main.py", "result.json"]
