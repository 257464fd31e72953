"""The post-training pipeline: data-clean -> data-balance -> hparam-config -> lora-sft -> eval,
each a sub-agent task run through the broker, each fed by the verified outputs of the one
before (the broker keeps a passed task's workspace in ``outputs_dir/<task id>``).

The raw data is generated here (deterministic): prompt/completion rows about the colors of
things, labelled with a category, with duplicates, broken rows and a skewed category mix, so
each data step has real work. Without an API key every step is answered by a ``ScriptedModel``
replaying its skill's worked solution (said in every output); with one, a real model writes
the scripts. The training steps run in the train image (``train_image``).
"""

from __future__ import annotations

import json
import random
import statistics
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execloop.errors import ConfigError
from execloop.runtime.models import ScriptedModel
from execloop.runtime.models.base import Model
from execloop.runtime.skills import find_skill
from execloop.runtime.task import Budget, Result, Task, TaskStatus
from execloop.sandboxes.spec import SandboxSpec

__all__ = [
    "MIN_LOSS_DROP",
    "Pipeline",
    "PipelineStep",
    "STEPS",
    "make_raw_data",
    "scripted_pipeline_model",
]

STEPS = ("data-clean", "data-balance", "hparam-config", "lora-sft", "eval")
MIN_LOSS_DROP = 0.2  # nats the adapter must gain over the base model (the steps' margin)
_COLORS = {
    "fruit": {"apple": "red", "banana": "yellow", "cherry": "red", "lemon": "yellow",
              "lime": "green", "plum": "purple", "grape": "purple", "peach": "orange"},
    "animal": {"frog": "green", "crow": "black", "swan": "white", "fox": "orange",
               "bear": "brown", "mouse": "grey"},
    "nature": {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "sea": "blue"},
}  # fmt: skip
_TEMPLATES = ("what color is the {} ?", "tell me the color of the {} .", "the {} has which color ?")
_HELD_OUT = "which color does the {} have ?"
_ROW_SCHEMA = {
    "type": "object",
    "required": ["prompt", "completion", "category"],
    "additionalProperties": False,
    "properties": {
        "prompt": {"type": "string", "minLength": 3},
        "completion": {"type": "string", "minLength": 3},
        "category": {"enum": sorted(_COLORS)},
    },
}


_PREFIXES = ("", "quick question : ", "please , ", "hey , ", "i wonder , ", "tell me : ")


def _rows(category: str, template: str | None = None) -> list[dict[str, str]]:
    """Every distinct row of ``category`` (each prefix, template and thing once)."""
    return [
        {
            "prompt": prefix + form.format(thing),
            "completion": f" the {thing} is {color} .",
            "category": category,
        }
        for prefix in _PREFIXES
        for form in ((template,) if template else _TEMPLATES)
        for thing, color in sorted(_COLORS[category].items())
    ]


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make_raw_data(folder: Path, *, seed: int = 7) -> dict[str, Path]:
    """raw.jsonl (fruit 144, animal 54, nature 27 distinct rows: skewed 5:2:1; plus 10
    duplicates and 6 broken rows), its row schema, and a held-out eval.jsonl (48 rows phrased
    as no training row is)."""
    rng = random.Random(seed)
    rows = _rows("fruit") + rng.sample(_rows("animal"), 54) + rng.sample(_rows("nature"), 27)
    rows += rng.sample(rows, 10)  # duplicates
    rows += [{"prompt": "", "completion": " the sky is blue .", "category": "nature"}] * 3
    rows += [{"prompt": "what color is the fox ?", "completion": "", "category": "pets"}] * 3
    rng.shuffle(rows)
    held = rng.sample([row for c in sorted(_COLORS) for row in _rows(c, _HELD_OUT)], 48)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.json").write_text(json.dumps(_ROW_SCHEMA, indent=1), encoding="utf-8")
    return {
        "raw.jsonl": _write_jsonl(folder / "raw.jsonl", rows),
        "schema.json": folder / "schema.json",
        "eval.jsonl": _write_jsonl(folder / "eval.jsonl", [
            {"prompt": r["prompt"], "completion": r["completion"]} for r in held
        ]),
    }  # fmt: skip


@dataclass(frozen=True)
class PipelineStep:
    """One finished step: its task, its result and the folder of its verified outputs."""

    skill: str
    task: Task
    result: Result
    outputs: Path


@dataclass
class Pipeline:
    """Builds each step's task from the outputs of the step before (see the module docstring).
    ``run_task`` runs one task (through the broker) and returns its result."""

    work: Path
    outputs_dir: Path
    train_image: str = "execloop/train"
    steps: list[PipelineStep] = field(default_factory=list)

    def _task_json(self, skill: str, params: dict[str, Any]) -> Path:
        folder = self.work / "inputs" / skill
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "task.json").write_text(json.dumps(params, indent=1), encoding="utf-8")
        return folder / "task.json"

    def _output(self, skill: str, name: str) -> Path:
        step = next(step for step in self.steps if step.skill == skill)
        return step.outputs / name

    def next_task(self, skill: str, raw: dict[str, Path]) -> Task:
        """The task of step ``skill``, its inputs taken from the earlier steps' outputs."""
        goal, params, inputs = self._step(skill, raw)
        training = find_skill(skill).sandbox.image is not None
        return Task(
            id=f"{skill}-{uuid.uuid4().hex[:6]}",
            goal=goal,
            skill=skill,
            inputs=(*inputs, self._task_json(skill, params)),
            sandbox=SandboxSpec(image=self.train_image) if training else SandboxSpec(),
            budget=Budget(max_attempts=3),
        )

    def _step(
        self, skill: str, raw: dict[str, Path]
    ) -> tuple[str, dict[str, Any], tuple[Path, ...]]:
        """Goal, task.json and input files of step ``skill`` (built only once it is next)."""
        if skill == "data-clean":
            return (
                "Clean raw.jsonl (SFT rows: prompt, completion, category) against schema.json: "
                "drop broken rows and duplicates.",
                {"data": "raw.jsonl", "schema": "schema.json"},
                (raw["raw.jsonl"], raw["schema.json"]),
            )
        if skill == "data-balance":
            return (
                "Measure the category balance of clean.jsonl and oversample it to at most 1.5:1.",
                {"data": "clean.jsonl", "label_column": "category", "strategy": "oversample",
                 "seed": 7, "max_imbalance": 1.5},
                (self._output("data-clean", "clean.jsonl"),),
            )  # fmt: skip
        if skill == "hparam-config":
            return (
                "Pick LoRA hyperparameters for this dataset and a tiny model on one small device "
                "within 6 minutes.",
                self._hparam_inputs(),
                (),
            )
        if skill == "lora-sft":
            return (
                "LoRA SFT on balanced.jsonl with the hyperparameters of config.json; eval loss "
                "against the base model on eval.jsonl.",
                {"train_file": "balanced.jsonl", "eval_file": "eval.jsonl",
                 "config_file": "config.json", "min_eval_loss_drop": MIN_LOSS_DROP},
                (self._output("data-balance", "balanced.jsonl"), raw["eval.jsonl"],
                 self._output("hparam-config", "config.json")),
            )  # fmt: skip
        return (
            "Evaluate adapter/ against base_model/ on eval.jsonl: loss, perplexity, token "
            "accuracy.",
            {"eval_file": "eval.jsonl", "min_eval_loss_drop": MIN_LOSS_DROP},
            (raw["eval.jsonl"], self._output("lora-sft", "base_model"),
             self._output("lora-sft", "adapter")),
        )  # fmt: skip

    def _hparam_inputs(self) -> dict[str, Any]:
        """hparam-config's constraints, measured on data-balance's output."""
        path = self._output("data-balance", "balanced.jsonl")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        tokens = sorted(len((r["prompt"] + r["completion"]).split()) + 1 for r in rows)
        return {
            "method": "lora",
            "model_params_b": 0.0001,  # the tiny Llama lora-sft builds (~0.1 M parameters)
            "gpu_memory_gb": 2,  # the training sandbox's memory
            "gpu_tflops": 0.001,  # what one shared CPU core gives such tiny matrices
            "bf16": False,
            "dataset_examples": len(rows),
            "avg_tokens": round(statistics.mean(tokens)),
            "p95_tokens": tokens[int(0.95 * (len(tokens) - 1))],
            "time_budget_hours": 0.1,
            "max_epochs": 3,
        }

    async def run(
        self,
        run_task: Callable[[Task], Awaitable[Result]],
        *,
        on_step: Callable[[PipelineStep], None],
    ) -> list[PipelineStep]:
        """Every step in order; stops at the first that does not pass (its successors would
        have no inputs)."""
        raw = make_raw_data(self.work / "raw")
        for skill in STEPS:
            task = self.next_task(skill, raw)
            result = await run_task(task)
            step = PipelineStep(skill, task, result, self.outputs_dir / task.id)
            self.steps.append(step)
            on_step(step)
            if result.status is not TaskStatus.PASSED:
                break
        return self.steps


def scripted_pipeline_model(task: Task) -> Model:
    """The scripted model of a pipeline step: its skill's worked solution, replayed."""
    if task.skill not in STEPS:
        raise ConfigError(f"task {task.id!r} is not a step of the pipeline")
    (example, *_) = find_skill(task.skill).load_examples()
    return ScriptedModel([example.solution_code()], name=f"pipeline-{task.skill}")
