"""The live progress bar of `execloop run` and `execloop task` under a pseudo-terminal, plain
lines without one, and the broker's store read back by `execloop runs RUN_ID`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .test_cli_task import _on_a_terminal

TRAIN = """\
import json, time
import execloop_progress
print("training", flush=True)
for step in range(1, 21):
    execloop_progress.report(step, 20, loss=4.0 - step / 10)
    time.sleep(0.06)
json.dump({"steps": 20}, open("result.json", "w"))
print("done")
"""
# rich's bar, e.g. "train.py ━━━━━━╺━━━━━ 6/20 eta 0:00:02 0:00:00 loss 3.4" (colours removed)
_BAR = re.compile(r"train\.py [━╺]{10,} (\d+)/20 eta")
_CSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _lines(screen: bytes) -> str:
    return _CSI.sub(b"", screen).replace(b"\r", b"\n").decode(errors="replace")


def test_run_shows_a_live_bar_on_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    status, screen = _on_a_terminal(["run", "--backend", "local", str(script)])
    text = _lines(screen)
    assert status == 0, text
    steps = [int(step) for step in _BAR.findall(text)]
    assert steps[0] < 20 and steps[-1] == 20, text  # drawn as it went, then at the end
    assert "loss 2" in text
    assert "training" in text and "done" in text
    assert '"execloop": "progress"' not in text  # the bar stands for the protocol lines


def test_run_prints_plain_progress_lines_off_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    done = subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", "run", "--backend", "local", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("training\n") and "done\n" in done.stdout
    assert "execloop" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("train.py: step")]
    assert lines[0] == "train.py: step 1/20, loss 3.9 (5%)"
    assert lines[-1] == "train.py: step 20/20, loss 2 (100%)"
    assert not _BAR.search(done.stderr)


def test_task_shows_the_bar_and_the_broker_keeps_the_events(tmp_path: Path) -> None:
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([TRAIN]))
    db = tmp_path / "runs.db"
    status, screen = _on_a_terminal(
        ["task", "train", "--model", f"scripted:{replies}", "--backend", "local", "--db", str(db)]
    )
    text = _lines(screen)
    assert status == 0, text
    assert re.search(r"attempt 1 [━╺]{10,} 20/20 eta", text), text
    assert "passed after 1 attempt(s)" in text
    command = [sys.executable, "-m", "execloop.runtime.cli", "runs", "--db", str(db)]
    (run,) = json.loads(
        subprocess.run([*command, "--json"], capture_output=True, check=True).stdout
    )
    shown = subprocess.run([*command, run["run"], "--json"], capture_output=True, check=True)
    (task,) = json.loads(shown.stdout)
    steps = [record["event"]["step"] for record in task["progress"]]
    assert steps[0] == 1 and steps[-1] == 20 and steps == sorted(steps)
    assert task["progress"][-1]["attempt"] == 1
    assert task["progress"][-1]["event"]["metrics"] == {"loss": 2.0}
    wide = {**os.environ, "COLUMNS": "200"}
    table = subprocess.run(
        [*command, run["run"]], capture_output=True, text=True, check=True, env=wide
    )
    assert "step 20/20, loss 2" in table.stdout
