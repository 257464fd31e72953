"""Evaluate a LoRA adapter against its base model: loss, perplexity and completion-token
accuracy on held-out prompt/completion rows. Writes metrics.json, eval.png and result.json."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

DEFAULTS = {
    "model_dir": "base_model",
    "adapter_dir": "adapter",
    "max_seq_len": 64,
    "min_eval_loss_drop": 0.3,
}
task = {**DEFAULTS, **json.loads(Path("task.json").read_text())}
torch.set_num_threads(1)  # the sandbox has one CPU: more threads stall each other
rows = [json.loads(line) for line in Path(task["eval_file"]).read_text().splitlines() if line]
tokenizer = AutoTokenizer.from_pretrained(task["model_dir"])


def evaluate(model):
    """Loss: mean cross-entropy per completion token (eos included), prompt masked.
    Accuracy: share of those tokens that are the model's top-1 prediction."""
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
            guesses = out.logits[0, :-1].argmax(-1)
            total += out.loss.item() * n
            right += int((guesses[scored] == targets[scored]).sum())
            count += n
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "token_accuracy": right / count}


base = AutoModelForCausalLM.from_pretrained(task["model_dir"])
metrics = {"base": evaluate(base)}
adapted = PeftModel.from_pretrained(base, task["adapter_dir"])
metrics["adapter"] = evaluate(adapted)
metrics["loss_drop"] = metrics["base"]["loss"] - metrics["adapter"]["loss"]
metrics["examples"] = len(rows)
Path("metrics.json").write_text(json.dumps(metrics, indent=1))

figure, (left, right) = plt.subplots(1, 2, figsize=(6, 3))
names = ["base", "adapter"]
left.bar(names, [metrics[n]["loss"] for n in names], color=["grey", "green"])
left.set_title("eval loss")
right.bar(names, [metrics[n]["token_accuracy"] for n in names], color=["grey", "green"])
right.set_title("token accuracy")
figure.tight_layout()
figure.savefig("eval.png", dpi=80)

Path("result.json").write_text(
    json.dumps(
        {
            "base_loss": metrics["base"]["loss"],
            "adapter_loss": metrics["adapter"]["loss"],
            "loss_drop": metrics["loss_drop"],
            "base_token_accuracy": metrics["base"]["token_accuracy"],
            "adapter_token_accuracy": metrics["adapter"]["token_accuracy"],
        }
    )
)
base_m, adapter_m = metrics["base"], metrics["adapter"]
print(
    f"eval loss {base_m['loss']:.3f} -> {adapter_m['loss']:.3f}, token accuracy "
    f"{base_m['token_accuracy']:.2f} -> {adapter_m['token_accuracy']:.2f}"
)
