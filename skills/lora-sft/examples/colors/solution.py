"""LoRA SFT of a tiny Llama built from a config (no download), with PEFT + TRL's SFTTrainer.

Reads task.json; writes base_model/, adapter_init/, adapter/, adapter_manifest.json,
metrics.json, loss_curve.png and result.json. Checkpoints to $EXECLOOP_CHECKPOINT_DIR when the
task has one, and resumes from the last checkpoint there.
"""

import hashlib
import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

DEFAULTS = {  # the skill's defaults, for the keys task.json leaves out
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "max_seq_len": 64,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "learning_rate": 0.002,
    "epochs": 2,
    "batch_size": 8,
    "seed": 42,
    "save_steps": 10,
    "min_eval_loss_drop": 0.3,
}
task = {**DEFAULTS, **json.loads(Path("task.json").read_text())}
# As many threads as the sandbox has CPUs (1): more than its CPU quota stall each other (10x).
torch.set_num_threads(1)
if task.get("config_file"):  # an hparam-config result: its choices win over the defaults
    config = json.loads(Path(task["config_file"]).read_text())
    task.update(
        learning_rate=config["learning_rate"],
        epochs=config["epochs"],
        batch_size=config["per_device_batch_size"],
        seed=config["seed"],
        lora_r=config["lora"]["r"],
        lora_alpha=config["lora"]["alpha"],
        lora_dropout=config["lora"]["dropout"],
    )


def rows(name):
    return [json.loads(line) for line in Path(name).read_text().splitlines() if line.strip()]


train_rows, eval_rows = rows(task["train_file"]), rows(task["eval_file"])

# A word-level tokenizer built from the training text: deterministic, tiny, no download.
words = Tokenizer(models.WordLevel(unk_token="<unk>"))
words.pre_tokenizer = pre_tokenizers.Whitespace()
corpus = [row["prompt"] + row["completion"] for row in train_rows]
words.train_from_iterator(
    corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "</s>"])
)
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=words, pad_token="<pad>", unk_token="<unk>", eos_token="</s>"
)

torch.manual_seed(task["seed"])
base = LlamaForCausalLM(
    LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=task["hidden_size"],
        intermediate_size=2 * task["hidden_size"],
        num_hidden_layers=task["num_layers"],
        num_attention_heads=task["num_heads"],
        num_key_value_heads=task["num_heads"],
        max_position_embeddings=task["max_seq_len"],
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
)
base.save_pretrained("base_model")
tokenizer.save_pretrained("base_model")


def eval_loss(model):
    """Mean cross-entropy per completion token (eos included), prompt tokens masked."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in eval_rows:
            prompt = tokenizer(row["prompt"])["input_ids"]
            answer = tokenizer(row["completion"])["input_ids"] + [tokenizer.eos_token_id]
            ids = (prompt + answer)[: task["max_seq_len"]]
            labels = ([-100] * len(prompt) + answer)[: task["max_seq_len"]]
            n = sum(label != -100 for label in labels[1:])
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            total, count = total + out.loss.item() * n, count + n
    return total / count


base_loss = eval_loss(base)
lora = LoraConfig(
    r=task["lora_r"],
    lora_alpha=task["lora_alpha"],
    lora_dropout=task["lora_dropout"],
    target_modules="all-linear",
    task_type="CAUSAL_LM",
)
model = get_peft_model(base, lora)
model.save_pretrained("adapter_init")

checkpoints = os.environ.get("EXECLOOP_CHECKPOINT_DIR")
output_dir = os.path.join(checkpoints, "trainer") if checkpoints else "/tmp/trainer"
last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
resumed_from = int(last.rsplit("-", 1)[1]) if last else 0
print(f"resuming from step {resumed_from}" if last else "training from step 0")


class Progress(TrainerCallback):
    """One execloop progress line per logged step (the runtime shows a live bar)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            line = {"execloop": "progress", "step": state.global_step, "total": state.max_steps}
            print(json.dumps({**line, "loss": logs["loss"]}), flush=True)


trainer = SFTTrainer(
    model=model,
    args=SFTConfig(
        output_dir=output_dir,
        num_train_epochs=task["epochs"],
        per_device_train_batch_size=task["batch_size"],
        learning_rate=task["learning_rate"],
        lr_scheduler_type="constant",
        max_length=task["max_seq_len"],
        logging_steps=1,
        save_strategy="steps" if checkpoints else "no",
        save_steps=task["save_steps"],
        save_total_limit=1,
        seed=task["seed"],
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    ),
    train_dataset=Dataset.from_list(train_rows),
    processing_class=tokenizer,
    callbacks=[Progress()],
)
trainer.train(resume_from_checkpoint=last)
model.save_pretrained("adapter")
adapted_loss = eval_loss(model)

losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
metrics = {
    "base_eval_loss": base_loss,
    "eval_loss": adapted_loss,
    "base_eval_perplexity": math.exp(base_loss),
    "eval_perplexity": math.exp(adapted_loss),
    "train_losses": losses,
    "steps": trainer.state.global_step,
    "resumed_from_step": resumed_from,
}
Path("metrics.json").write_text(json.dumps(metrics, indent=1))

plt.figure(figsize=(5, 3))
plt.plot([e["step"] for e in losses], [e["loss"] for e in losses], label="train loss")
plt.axhline(base_loss, color="grey", linestyle="--", label="base eval loss")
plt.axhline(adapted_loss, color="green", linestyle="--", label="adapter eval loss")
plt.xlabel("step")
plt.legend()
plt.tight_layout()
plt.savefig("loss_curve.png", dpi=80)

files = sorted(p for p in Path("adapter").rglob("*") if p.is_file())
manifest = {
    "base_model": "base_model",
    "peft_type": "LORA",
    "r": task["lora_r"],
    "files": [
        {
            "path": str(p),
            "bytes": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        }
        for p in files
    ],
}
Path("adapter_manifest.json").write_text(json.dumps(manifest, indent=1))
summary = {
    k: metrics[k]
    for k in ("base_eval_loss", "eval_loss", "eval_perplexity", "steps", "resumed_from_step")
}
Path("result.json").write_text(json.dumps(summary))
print(f"eval loss {base_loss:.3f} -> {adapted_loss:.3f} in {metrics['steps']} steps")
