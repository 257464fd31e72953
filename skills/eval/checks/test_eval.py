"""eval checks: the reported numbers are recomputed from the saved models, and the adapter
beats its base model by the task's margin.

Runs in the sandbox (the train image) with the workspace as the working directory; only reads
files, never imports the agent's code. The definitions are the ones SKILL.md gives.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

WORK = Path.cwd()
DEFAULTS = {
    "model_dir": "base_model",
    "adapter_dir": "adapter",
    "max_seq_len": 64,
    "min_eval_loss_drop": 0.3,
}
RTOL = 1e-3


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return {**DEFAULTS, **json.loads((WORK / "task.json").read_text())}


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    return dict(json.loads((WORK / "metrics.json").read_text()))


@pytest.fixture(scope="module")
def recomputed(task: dict[str, Any]) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    rows = [
        json.loads(line) for line in (WORK / task["eval_file"]).read_text().splitlines() if line
    ]
    tokenizer = AutoTokenizer.from_pretrained(WORK / task["model_dir"])

    def evaluate(model: Any) -> dict[str, float]:
        model.eval()
        total, right, count = 0.0, 0, 0
        with torch.no_grad():
            for row in rows:
                prompt = tokenizer(row["prompt"])["input_ids"]
                answer = tokenizer(row["completion"])["input_ids"] + [tokenizer.eos_token_id]
                ids = (prompt + answer)[: task["max_seq_len"]]
                labels = ([-100] * len(prompt) + answer)[: task["max_seq_len"]]
                out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
                targets = torch.tensor(labels[1:])
                scored = targets != -100
                n = int(scored.sum())
                total += out.loss.item() * n
                right += int((out.logits[0, :-1].argmax(-1)[scored] == targets[scored]).sum())
                count += n
        return {"loss": total / count, "token_accuracy": right / count}

    base = AutoModelForCausalLM.from_pretrained(WORK / task["model_dir"])
    found = {"base": evaluate(base)}
    found["adapter"] = evaluate(PeftModel.from_pretrained(base, WORK / task["adapter_dir"]))
    return found


def test_every_number_is_finite(metrics: dict[str, Any]) -> None:
    for model in ("base", "adapter"):
        for name, value in metrics[model].items():
            assert math.isfinite(value), f"{model}.{name} is {value}"


def test_the_numbers_are_recomputed_from_the_saved_models(
    metrics: dict[str, Any], recomputed: dict[str, dict[str, float]]
) -> None:
    for model in ("base", "adapter"):
        for name, value in recomputed[model].items():
            assert math.isclose(metrics[model][name], value, rel_tol=RTOL, abs_tol=1e-6), (
                f"{model}.{name}: metrics.json says {metrics[model][name]:.5f}, "
                f"the saved model gives {value:.5f}"
            )
        loss = metrics[model]["loss"]
        assert math.isclose(metrics[model]["perplexity"], math.exp(loss), rel_tol=RTOL)


def test_the_adapter_beats_the_base_model_by_the_margin(
    task: dict[str, Any], recomputed: dict[str, dict[str, float]]
) -> None:
    drop = recomputed["base"]["loss"] - recomputed["adapter"]["loss"]
    assert drop >= task["min_eval_loss_drop"], (
        f"eval loss {recomputed['base']['loss']:.4f} -> {recomputed['adapter']['loss']:.4f} "
        f"(drop {drop:.4f}) is less than min_eval_loss_drop {task['min_eval_loss_drop']}"
    )


def test_the_plot_is_a_png() -> None:
    assert (WORK / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "eval.png is not a PNG"
