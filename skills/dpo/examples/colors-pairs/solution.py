"""DPO with LoRA adapters (PEFT + TRL's DPOTrainer) on preference pairs, on a tiny Llama built
from a config (no download). The reference model is the base with the adapters disabled.

Reads task.json; writes base_model/, adapter_init/, adapter/, metrics.json, loss_curve.png and
result.json.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback
from trl import DPOConfig, DPOTrainer

DEFAULTS = {  # the skill's defaults, for the keys task.json leaves out
    "hidden_size": 64, "num_layers": 2, "num_heads": 4, "max_seq_len": 64, "lora_r": 8,
    "lora_alpha": 16, "beta": 0.1, "learning_rate": 0.005, "epochs": 2, "batch_size": 8,
    "seed": 42, "min_eval_loss_drop": 0.1,
}  # fmt: skip
task = {**DEFAULTS, **json.loads(Path("task.json").read_text())}
torch.set_num_threads(1)  # the sandbox has one CPU: more threads stall each other (10x)


def rows(name):
    return [json.loads(line) for line in Path(name).read_text().splitlines() if line.strip()]


train_rows, eval_rows = rows(task["train_file"]), rows(task["eval_file"])
words = Tokenizer(models.WordLevel(unk_token="<unk>"))
words.pre_tokenizer = pre_tokenizers.Whitespace()
corpus = [r["prompt"] + r["chosen"] + r["rejected"] for r in train_rows]
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
model = get_peft_model(
    base,
    LoraConfig(r=task["lora_r"], lora_alpha=task["lora_alpha"], target_modules="all-linear",
               task_type="CAUSAL_LM"),
)  # fmt: skip
model.save_pretrained("adapter_init")


def completion_logp(net, prompt, completion):
    """Sum of the log-probabilities of the completion's tokens (eos included) after the prompt."""
    p = tokenizer(prompt)["input_ids"]
    c = tokenizer(completion)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([(p + c)[: task["max_seq_len"]]])
    logps = F.log_softmax(net(input_ids=ids).logits[0, :-1], dim=-1)
    targets = ids[0, 1:]
    picked = logps.gather(-1, targets[:, None])[:, 0]
    return picked[len(p) - 1 :].sum().item()


def dpo_eval():
    """Mean DPO loss and preference accuracy on the eval pairs (policy vs the base model)."""
    model.eval()
    margins = []
    with torch.no_grad():
        for r in eval_rows:
            policy = completion_logp(model, r["prompt"], r["chosen"]) - completion_logp(
                model, r["prompt"], r["rejected"]
            )
            with model.disable_adapter():
                ref = completion_logp(model, r["prompt"], r["chosen"]) - completion_logp(
                    model, r["prompt"], r["rejected"]
                )
            margins.append(task["beta"] * (policy - ref))
    losses = [-F.logsigmoid(torch.tensor(m)).item() for m in margins]
    return sum(losses) / len(losses), sum(m > 0 for m in margins) / len(margins)


base_loss, base_accuracy = dpo_eval()  # before training: the policy is the reference


class Progress(TrainerCallback):
    """One execloop progress line per logged step (the runtime shows a live bar)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            line = {"execloop": "progress", "step": state.global_step, "total": state.max_steps}
            print(json.dumps({**line, "loss": logs["loss"]}), flush=True)


trainer = DPOTrainer(
    model=model,
    args=DPOConfig(
        output_dir="/tmp/dpo",
        beta=task["beta"],
        num_train_epochs=task["epochs"],
        per_device_train_batch_size=task["batch_size"],
        learning_rate=task["learning_rate"],
        lr_scheduler_type="constant",
        max_length=task["max_seq_len"],
        logging_steps=1,
        save_strategy="no",
        seed=task["seed"],
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    ),
    train_dataset=Dataset.from_list(train_rows),
    processing_class=tokenizer,
    callbacks=[Progress()],
)
trainer.train()
model.save_pretrained("adapter")
eval_loss, accuracy = dpo_eval()

losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
metrics = {
    "base_eval_loss": base_loss,
    "eval_loss": eval_loss,
    "base_preference_accuracy": base_accuracy,
    "preference_accuracy": accuracy,
    "train_losses": losses,
    "steps": trainer.state.global_step,
}
Path("metrics.json").write_text(json.dumps(metrics, indent=1))
plt.figure(figsize=(5, 3))
plt.plot([e["step"] for e in losses], [e["loss"] for e in losses], label="train DPO loss")
plt.axhline(base_loss, color="grey", linestyle="--", label="eval loss before")
plt.axhline(eval_loss, color="green", linestyle="--", label="eval loss after")
plt.xlabel("step")
plt.legend()
plt.tight_layout()
plt.savefig("loss_curve.png", dpi=80)
summary = {k: metrics[k] for k in ("base_eval_loss", "eval_loss", "preference_accuracy", "steps")}
Path("result.json").write_text(json.dumps(summary))
print(f"DPO eval loss {base_loss:.3f} -> {eval_loss:.3f}, preference accuracy {accuracy:.2f}")
