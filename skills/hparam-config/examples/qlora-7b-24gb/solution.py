"""Pick QLoRA/LoRA/full/DPO hyperparameters that fit the task's GPU memory and time budget."""

import json
import math
import sys
from pathlib import Path

task = {
    "num_gpus": 1,
    "gpu_tflops": 120,
    "bf16": True,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_effective_batch": 16,
    "max_epochs": 3,
}
task.update(json.loads(Path("task.json").read_text(encoding="utf-8")))
method = task["method"]
full, qlora, dpo = method == "full", method == "qlora", method == "dpo"
params_b, gpus = task["model_params_b"], task["num_gpus"]
P = params_b * 1e9
notes = []


def memory(batch, seq_len, checkpointing):
    """The skill's documented estimate, in GB, split by what uses the memory."""
    trainable = P if full else P * task["lora_r"] * 4e-4
    mb_per_token = (0.1 if checkpointing else 1.7) * math.sqrt(params_b)
    parts = {
        "weights": P * (0.55 if qlora else 2) / 1e9,
        "optimizer": trainable * (14 if full else 16) / 1e9,
        "activations": batch * (2 if dpo else 1) * seq_len * mb_per_token / 1000,
    }
    return 1.1 * sum(parts.values()) + 1.0, parts


def hours(epochs, checkpointing):
    tokens = task["dataset_examples"] * task["avg_tokens"] * (2 if dpo else 1)
    flops = P * ((6 if full else 4) + (2 if checkpointing else 0) + (2 if dpo else 0))
    throughput = task["gpu_tflops"] * 1e12 * (0.2 if qlora else 0.35) * gpus
    return epochs * tokens * flops / throughput / 3600, tokens


seq_len = max(128, 2 ** math.ceil(math.log2(task["p95_tokens"])))
budget = 0.9 * task["gpu_memory_gb"]
target = task["target_effective_batch"]
sizes = [2**i for i in range(int(math.log2(target)), -1, -1)]
fits = [b for b in sizes if b >= 2 and memory(b, seq_len, False)[0] <= budget]
choice = (fits[0], False) if fits else None
if choice is None:
    fits = [b for b in sizes if memory(b, seq_len, True)[0] <= budget]
    if not fits:
        need = memory(1, seq_len, True)[0]
        sys.exit(f"infeasible: batch 1 with checkpointing needs {need:.1f} GB > {budget:.1f} GB")
    choice = (fits[0], True)
    notes.append(f"gradient checkpointing on: batch 2 without it exceeds {budget:.1f} GB")
batch, checkpointing = choice
accumulation = max(1, round(target / (batch * gpus)))
effective = batch * accumulation * gpus

epochs = task["max_epochs"]
per_epoch, tokens_per_epoch = hours(1, checkpointing)
if epochs * per_epoch > task["time_budget_hours"]:
    epochs = math.floor(10 * task["time_budget_hours"] / per_epoch) / 10
    if epochs < 0.1:
        sys.exit(
            f"infeasible: one epoch takes {per_epoch:.1f} h, the budget is "
            f"{task['time_budget_hours']} h"
        )
    notes.append(f"epochs lowered to {epochs} to fit {task['time_budget_hours']} h")

lora = {
    "r": task["lora_r"],
    "alpha": task["lora_alpha"],
    "dropout": task["lora_dropout"],
    "target_modules": "all-linear",
}
config = {
    "method": method,
    "learning_rate": {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5, "dpo": 5e-6}[method],
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.03,
    "weight_decay": 0.0,
    "epochs": epochs,
    "per_device_batch_size": batch,
    "gradient_accumulation_steps": accumulation,
    "num_gpus": gpus,
    "max_seq_len": seq_len,
    "precision": "bf16" if task["bf16"] else "fp16",
    "gradient_checkpointing": checkpointing,
    "optimizer": "paged_adamw_32bit" if qlora else "adamw_torch",
    "lora": None if full else lora,
    "quantization": "nf4" if qlora else None,
    "dpo_beta": 0.1 if dpo else None,
    "seed": 42,
}
estimated_memory, breakdown = memory(batch, seq_len, checkpointing)
result = {
    "method": method,
    "estimated_memory_gb": round(estimated_memory, 3),
    "gpu_memory_gb": task["gpu_memory_gb"],
    # significant digits, not decimals: a small job's hours must still match within 1 %
    "estimated_hours": float(f"{epochs * per_epoch:.4g}"),
    "time_budget_hours": task["time_budget_hours"],
    "effective_batch_size": effective,
    "total_steps": math.ceil(task["dataset_examples"] * epochs / effective),
    "tokens_per_epoch": tokens_per_epoch,
    "memory_breakdown_gb": {k: round(v, 3) for k, v in breakdown.items()},
    "notes": notes,
}
Path("config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
Path("result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
print(
    f"{method}: batch {batch} x {accumulation} x {gpus} GPU(s), {epochs} epochs, "
    f"~{estimated_memory:.1f} GB, ~{result['estimated_hours']:.1f} h"
)
