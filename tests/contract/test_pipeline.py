"""The post-training pipeline, keyless, end to end in Docker (train-cpu image for the training
steps): every step passes, fed by the one before, and the summary says what it should."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_pipeline_example_runs_every_step_keyless(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "post_training_pipeline.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=600,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "SCRIPTED MODEL" in out and "token ledger (scripted model" in out
    for skill in ("data-clean", "data-balance", "hparam-config", "lora-sft", "eval"):
        assert re.search(rf"{skill}: passed in 1 attempt\(s\)", out), skill
    assert "critical path: data-clean" in out and "-> eval (" in out
    curve = Path(re.search(r"loss curve: (\S+)", out)[1])  # type: ignore[index]
    assert curve.read_bytes()[:4] == b"\x89PNG"
    # each step's inputs are the verified outputs of the one before
    hparams = json.loads((tmp_path / "inputs" / "hparam-config" / "task.json").read_text())
    (balanced,) = (tmp_path / "outputs").glob("data-balance-*/balanced.jsonl")
    assert hparams["dataset_examples"] == len(balanced.read_text().splitlines())
    (metrics,) = (tmp_path / "outputs").glob("eval-*/metrics.json")
    final = json.loads(metrics.read_text())
    assert final["adapter"]["loss"] < final["base"]["loss"] - 0.2
    assert f"loss {final['base']['loss']:.3f} -> {final['adapter']['loss']:.3f}" in out
