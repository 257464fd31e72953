"""The post-training pipeline's wiring, without Docker: the generated data has the flaws the
data steps fix, each step's task names its skill's image, and the model is scripted unless a
key (or --model) says otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execloop.runtime.models import AnthropicModel, ScriptedModel
from execloop.runtime.pipeline import Pipeline, make_raw_data, scripted_pipeline_model
from execloop.runtime.pipeline_cli import pipeline_model


def test_the_raw_data_is_skewed_duplicated_and_partly_broken(tmp_path: Path) -> None:
    files = make_raw_data(tmp_path)
    rows = [json.loads(line) for line in files["raw.jsonl"].read_text().splitlines()]
    good = [r for r in rows if r["prompt"] and r["completion"] and r["category"] != "pets"]
    assert len(rows) - len(good) == 6
    assert len(good) - len({json.dumps(r, sort_keys=True) for r in good}) == 10
    counts = {c: sum(r["category"] == c for r in good) for c in ("fruit", "animal", "nature")}
    assert counts["fruit"] > 4 * counts["nature"]
    held = files["eval.jsonl"].read_text()
    assert "which color does" in held and "which color does" not in files["raw.jsonl"].read_text()


def test_each_step_gets_its_task_json_and_the_training_steps_the_train_image(
    tmp_path: Path,
) -> None:
    pipeline = Pipeline(work=tmp_path, outputs_dir=tmp_path / "out", train_image="img/train-cpu")
    task = pipeline.next_task("data-clean", make_raw_data(tmp_path / "raw"))
    assert [p.name for p in task.inputs] == ["raw.jsonl", "schema.json", "task.json"]
    assert json.loads(task.inputs[-1].read_text()) == {"data": "raw.jsonl", "schema": "schema.json"}
    assert task.skill == "data-clean" and task.sandbox.image is None
    assert scripted_pipeline_model(task).name == "scripted:pipeline-data-clean"


def test_the_model_is_scripted_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    model, label = pipeline_model()
    assert model is None and label.startswith("SCRIPTED MODEL")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")  # never sent: nothing is called here
    model, label = pipeline_model()
    assert isinstance(model, AnthropicModel) and label == "model anthropic:claude-sonnet-4-5"
    replies = Path(__file__).parents[2] / "skills/data-clean/examples/customers/replies.yaml"
    model, label = pipeline_model(f"scripted:{replies}")  # --model wins over the key
    assert isinstance(model, ScriptedModel) and label == f"model scripted:{replies}"
