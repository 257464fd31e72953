"""hparam-config check: the reported estimates are recomputed from config.json and task.json.

Runs in the sandbox with the workspace as the working directory. Standard library only. The
formula is the one SKILL.md documents; defaults match the skill's front matter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

WORK = Path.cwd()
DEFAULTS = {"num_gpus": 1, "gpu_tflops": 120, "bf16": True, "lora_r": 16}


def _load(name: str) -> dict[str, Any]:
    return dict(json.loads((WORK / name).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return {**DEFAULTS, **_load("task.json")}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return _load("config.json")


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return _load("result.json")


def _estimate(task: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    method, params_b = config["method"], task["model_params_b"]
    p = params_b * 1e9
    full, qlora, dpo = method == "full", method == "qlora", method == "dpo"
    checkpointing = config["gradient_checkpointing"]
    trainable = p if full else p * config["lora"]["r"] * 4e-4
    weights = p * (0.55 if qlora else 2) / 1e9
    optimizer = trainable * (14 if full else 16) / 1e9
    mb_per_token = (0.1 if checkpointing else 1.7) * math.sqrt(params_b)
    seqs = config["per_device_batch_size"] * (2 if dpo else 1)
    activations = seqs * config["max_seq_len"] * mb_per_token / 1000
    tokens = task["dataset_examples"] * task["avg_tokens"] * (2 if dpo else 1)
    flops = p * ((6 if full else 4) + (2 if checkpointing else 0) + (2 if dpo else 0))
    throughput = task["gpu_tflops"] * 1e12 * (0.2 if qlora else 0.35) * config["num_gpus"]
    effective = (
        config["per_device_batch_size"] * config["gradient_accumulation_steps"] * config["num_gpus"]
    )
    return {
        "estimated_memory_gb": 1.1 * (weights + optimizer + activations) + 1.0,
        "estimated_hours": config["epochs"] * tokens * flops / throughput / 3600,
        "tokens_per_epoch": tokens,
        "effective_batch_size": effective,
        "total_steps": math.ceil(task["dataset_examples"] * config["epochs"] / effective),
    }


def test_estimates_are_recomputed(
    task: dict[str, Any], config: dict[str, Any], result: dict[str, Any]
) -> None:
    actual = _estimate(task, config)
    for name in ("estimated_memory_gb", "estimated_hours"):
        assert math.isclose(result[name], actual[name], rel_tol=0.01), (
            f"{name}: reported {result[name]}, the documented estimate gives {actual[name]:.3f}"
        )
    for name in ("tokens_per_epoch", "effective_batch_size", "total_steps"):
        assert result[name] == actual[name], f"{name}: reported {result[name]}, is {actual[name]}"


def test_the_budget_and_task_are_echoed(
    task: dict[str, Any], config: dict[str, Any], result: dict[str, Any]
) -> None:
    assert result["gpu_memory_gb"] == task["gpu_memory_gb"], "gpu_memory_gb is not the task's"
    assert result["time_budget_hours"] == task["time_budget_hours"], "time budget is not the task's"
    assert config["method"] == result["method"] == task["method"], "method differs from the task"
    assert config["num_gpus"] == task["num_gpus"], "num_gpus differs from the task"
    assert config["max_seq_len"] >= task["p95_tokens"], "max_seq_len truncates > 5% of examples"
    if not task["bf16"]:
        assert config["precision"] == "fp16", "bf16 requested on a GPU without bf16"
