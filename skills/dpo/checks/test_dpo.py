"""dpo checks: the preference training really happened and its numbers are reproducible.

Runs in the sandbox (the train image) with the workspace as the working directory; only reads
files, never imports the agent's code. The DPO eval loss is recomputed here with the definition
SKILL.md gives, from base_model/ (the reference) and base_model/ + adapter/ (the policy).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

WORK = Path.cwd()
DEFAULTS = {"beta": 0.1, "max_seq_len": 64, "min_eval_loss_drop": 0.1}
RTOL = 1e-3


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return {**DEFAULTS, **json.loads((WORK / "task.json").read_text())}


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    return dict(json.loads((WORK / "metrics.json").read_text()))


@pytest.fixture(scope="module")
def recomputed(task: dict[str, Any]) -> dict[str, float]:
    """DPO eval loss and preference accuracy of the saved adapter against the saved base."""
    torch.set_num_threads(1)
    rows = [
        json.loads(line) for line in (WORK / task["eval_file"]).read_text().splitlines() if line
    ]
    tokenizer = AutoTokenizer.from_pretrained(WORK / "base_model")
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(WORK / "base_model"), WORK / "adapter"
    )
    model.eval()

    def logp(prompt: str, completion: str) -> float:
        p = tokenizer(prompt)["input_ids"]
        c = tokenizer(completion)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([(p + c)[: task["max_seq_len"]]])
        logps = F.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        picked = logps.gather(-1, ids[0, 1:, None])[:, 0]
        return float(picked[len(p) - 1 :].sum())

    margins = []
    with torch.no_grad():
        for row in rows:
            policy = logp(row["prompt"], row["chosen"]) - logp(row["prompt"], row["rejected"])
            with model.disable_adapter():
                ref = logp(row["prompt"], row["chosen"]) - logp(row["prompt"], row["rejected"])
            margins.append(task["beta"] * (policy - ref))
    losses = [-float(F.logsigmoid(torch.tensor(m))) for m in margins]
    return {
        "eval_loss": sum(losses) / len(losses),
        "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
    }


def test_every_logged_loss_is_finite(metrics: dict[str, Any]) -> None:
    assert metrics["train_losses"], "metrics.json logs no training loss"
    bad = [(e["step"], e["loss"]) for e in metrics["train_losses"] if not math.isfinite(e["loss"])]
    assert not bad, f"non-finite training losses at (step, loss): {bad[:5]}"


def test_the_baseline_is_the_untrained_policy(metrics: dict[str, Any]) -> None:
    # before training the policy is the reference: every margin is 0, the loss log(2)
    assert math.isclose(metrics["base_eval_loss"], math.log(2), rel_tol=1e-4), (
        f"base_eval_loss is {metrics['base_eval_loss']}, the untrained policy gives log 2"
    )


def test_eval_loss_drops_by_the_margin(task: dict[str, Any], recomputed: dict[str, float]) -> None:
    drop = math.log(2) - recomputed["eval_loss"]
    assert drop >= task["min_eval_loss_drop"], (
        f"DPO eval loss {recomputed['eval_loss']:.4f} is only {drop:.4f} below log 2, less "
        f"than min_eval_loss_drop {task['min_eval_loss_drop']}"
    )


def test_reloading_the_adapter_reproduces_the_metrics(
    metrics: dict[str, Any], recomputed: dict[str, float]
) -> None:
    for name, value in recomputed.items():
        assert math.isclose(metrics[name], value, rel_tol=RTOL, abs_tol=1e-6), (
            f"{name}: metrics.json says {metrics[name]:.5f}, reloading gives {value:.5f}"
        )


def test_adapter_files_exist_and_differ_from_their_initialization() -> None:
    for folder in ("adapter", "adapter_init"):
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            assert (WORK / folder / name).is_file(), f"{folder}/{name} is missing"
    trained = load_file(str(WORK / "adapter" / "adapter_model.safetensors"))
    initial = load_file(str(WORK / "adapter_init" / "adapter_model.safetensors"))
    assert trained.keys() == initial.keys(), "adapter/ and adapter_init/ hold different tensors"
    assert any(not torch.equal(trained[k], initial[k]) for k in trained), "nothing was trained"


def test_the_loss_curve_is_a_png() -> None:
    assert (WORK / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
