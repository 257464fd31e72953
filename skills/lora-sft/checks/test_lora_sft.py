"""lora-sft checks: the training really happened and its numbers are reproducible.

Runs in the sandbox (the train image) with the workspace as the working directory; only reads
the files the script wrote, never imports its code. The eval loss is recomputed here with the
definition SKILL.md gives, from base_model/ and adapter/ as saved.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

WORK = Path.cwd()
DEFAULT_MARGIN = 0.3  # min_eval_loss_drop's default in SKILL.md
RTOL = 1e-3  # reloading the same weights on the same CPU build reproduces the loss this closely


def _json(name: str) -> Any:
    return json.loads((WORK / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return {"min_eval_loss_drop": DEFAULT_MARGIN, "max_seq_len": 64, **_json("task.json")}


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    return dict(_json("metrics.json"))


def eval_loss(model: Any, tokenizer: Any, rows: list[dict[str, str]], max_len: int) -> float:
    """Mean cross-entropy per completion token (eos included), prompt tokens masked."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"])["input_ids"]
            answer = tokenizer(row["completion"])["input_ids"] + [tokenizer.eos_token_id]
            ids = (prompt + answer)[:max_len]
            labels = ([-100] * len(prompt) + answer)[:max_len]
            n = sum(label != -100 for label in labels[1:])
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            total, count = total + out.loss.item() * n, count + n
    return total / count


@pytest.fixture(scope="module")
def reloaded(task: dict[str, Any]) -> dict[str, float]:
    """Eval losses of base_model/ and of base_model/ + adapter/, loaded from disk."""
    torch.set_num_threads(1)
    rows = [
        json.loads(line) for line in (WORK / task["eval_file"]).read_text().splitlines() if line
    ]
    tokenizer = AutoTokenizer.from_pretrained(WORK / "base_model")
    base = AutoModelForCausalLM.from_pretrained(WORK / "base_model")
    base_loss = eval_loss(base, tokenizer, rows, task["max_seq_len"])
    adapted = PeftModel.from_pretrained(base, WORK / "adapter")
    return {"base": base_loss, "adapter": eval_loss(adapted, tokenizer, rows, task["max_seq_len"])}


def test_every_logged_loss_is_finite(metrics: dict[str, Any]) -> None:
    losses = [entry["loss"] for entry in metrics["train_losses"]]
    assert losses, "metrics.json logs no training loss"
    bad = [(e["step"], e["loss"]) for e in metrics["train_losses"] if not math.isfinite(e["loss"])]
    assert not bad, f"non-finite training losses at (step, loss): {bad[:5]}"
    for name in ("base_eval_loss", "eval_loss"):
        assert math.isfinite(metrics[name]), f"{name} is {metrics[name]}"


def test_eval_loss_drops_by_the_margin(task: dict[str, Any], metrics: dict[str, Any]) -> None:
    drop = metrics["base_eval_loss"] - metrics["eval_loss"]
    assert drop >= task["min_eval_loss_drop"], (
        f"eval loss went {metrics['base_eval_loss']:.4f} -> {metrics['eval_loss']:.4f} "
        f"(drop {drop:.4f}), less than min_eval_loss_drop {task['min_eval_loss_drop']}"
    )


def test_adapter_files_exist_and_differ_from_their_initialization() -> None:
    for folder in ("adapter", "adapter_init"):
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            assert (WORK / folder / name).is_file(), f"{folder}/{name} is missing"
    trained = load_file(str(WORK / "adapter" / "adapter_model.safetensors"))
    initial = load_file(str(WORK / "adapter_init" / "adapter_model.safetensors"))
    assert trained.keys() == initial.keys(), "adapter/ and adapter_init/ hold different tensors"
    assert any("lora_B" in key for key in trained), "no LoRA B matrices in adapter/"
    moved = [key for key in trained if not torch.equal(trained[key], initial[key])]
    assert moved, "every adapter tensor equals its initialization: nothing was trained"


def test_reloading_the_adapter_reproduces_the_eval_losses(
    metrics: dict[str, Any], reloaded: dict[str, float]
) -> None:
    for name, key in (("base_eval_loss", "base"), ("eval_loss", "adapter")):
        assert math.isclose(metrics[name], reloaded[key], rel_tol=RTOL), (
            f"{name}: metrics.json says {metrics[name]:.5f}, reloading gives {reloaded[key]:.5f}"
        )


def test_the_manifest_lists_the_adapter_files() -> None:
    manifest = _json("adapter_manifest.json")
    listed = {entry["path"]: entry for entry in manifest["files"]}
    on_disk = {str(p.relative_to(WORK)) for p in (WORK / "adapter").rglob("*") if p.is_file()}
    assert set(listed) == on_disk, (
        f"manifest lists {sorted(listed)}, adapter/ has {sorted(on_disk)}"
    )
    for path, entry in listed.items():
        data = (WORK / path).read_bytes()
        assert entry["bytes"] == len(data), f"{path}: size differs from the manifest"
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), f"{path}: sha256 differs"


def test_the_loss_curve_is_a_png() -> None:
    assert (WORK / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
