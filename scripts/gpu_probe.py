"""Runs inside a train-image sandbox for scripts/gpu-check.sh: a matmul on the device checked
against the CPU, then 50 LoRA steps (PEFT) on a tiny GPT-2 built from a config (no download).
Prints one JSON line; exits non-zero when a check fails. ``--device cpu`` tests it without a GPU."""

import argparse
import json
import math
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda")
device = parser.parse_args().device
if device == "cuda" and not torch.cuda.is_available():
    print(json.dumps({"ok": False, "why": "torch sees no CUDA device in the sandbox"}))
    sys.exit(1)
name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"

torch.manual_seed(0)
a, b = torch.randn(512, 512), torch.randn(512, 512)
error = (a.to(device) @ b.to(device)).cpu().sub(a @ b).abs().max().item()

config = GPT2Config(
    n_layer=2, n_embd=64, n_head=2, n_positions=64, vocab_size=128, bos_token_id=0, eos_token_id=0
)
model = get_peft_model(
    GPT2LMHeadModel(config),
    LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], task_type="CAUSAL_LM"),
).to(device)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
batch = torch.arange(32 * 32).remainder(17).reshape(32, 32).to(device)  # a learnable pattern
losses, began = [], time.monotonic()
for _ in range(50):
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses.append(loss.item())
report = {
    "device": name,
    "torch": torch.__version__,
    "matmul_max_error": error,
    "lora_loss_first": losses[0],
    "lora_loss_last": losses[-1],
    "lora_seconds": round(time.monotonic() - began, 2),
}
report["ok"] = error < 1e-2 and all(map(math.isfinite, losses)) and losses[-1] < losses[0]
print(json.dumps(report))
sys.exit(0 if report["ok"] else 1)
