"""Running the post-training pipeline (``runtime/pipeline.py``) through a broker and printing
what an orchestrator gets back: each step's attempts, the final metrics, the loss curve, the
critical path and the token ledger. Shared by ``execloop demo --pipeline`` and
``examples/post_training_pipeline.py``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
from rich.console import Console
from rich.table import Table

from execloop.runtime.models.base import Model
from execloop.runtime.pipeline import Pipeline, PipelineStep, scripted_pipeline_model
from execloop.runtime.report import critical_path
from execloop.runtime.task import Result, Task, TaskStatus

__all__ = ["DEFAULT_MODEL", "pipeline_model", "run_pipeline"]

DEFAULT_MODEL = "anthropic:claude-sonnet-4-5"  # used when ANTHROPIC_API_KEY is set


def pipeline_model(spec: str | None = None) -> tuple[Model | None, str]:
    """The model that writes the steps' scripts, and how to say which it is: ``spec`` when
    given, else a real one when ``ANTHROPIC_API_KEY`` is set, else None (scripted)."""
    from execloop.runtime.models import parse_model

    if spec is None and os.environ.get("ANTHROPIC_API_KEY"):
        spec = DEFAULT_MODEL
    if spec is None:
        return None, "SCRIPTED MODEL: each step replays its skill's worked solution (no LLM)"
    return parse_model(spec), f"model {spec}"


def run_pipeline(
    out_dir: Path, *, model: Model | None, train_image: str, console: Console
) -> list[PipelineStep]:
    """Run every step under one broker (database ``out_dir/execloop.db``, verified outputs in
    ``out_dir/outputs``) and print the summary; returns the steps that ran."""
    from execloop.runtime.broker import Broker, summarize_run
    from execloop.runtime.store import TaskStore

    store = TaskStore(out_dir / "execloop.db")
    pipeline = Pipeline(work=out_dir, outputs_dir=out_dir / "outputs", train_image=train_image)

    def show(step: PipelineStep) -> None:
        result = step.result
        failed = [c.name for c in result.checks if not c.passed]
        console.print(
            f"{step.skill:>14}: {result.status.value} in {result.attempts} attempt(s), "
            f"{result.timings.total_s:.0f} s"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + (f"; {result.error}" if result.error else ""),
            markup=False,
            highlight=False,
        )

    async def main() -> tuple[list[PipelineStep], str]:
        async with Broker(
            db=store, model=model or scripted_pipeline_model, outputs_dir=pipeline.outputs_dir
        ) as broker:

            async def run_task(task: Task) -> Result:
                return await broker.result(await broker.submit(task))

            steps = await pipeline.run(run_task, on_step=show)
            return steps, broker.run_id

    try:
        steps, run_id = anyio.run(main)
        summary = summarize_run(store, run_id)
    finally:
        store.close()
    _print_outcome(steps, console)
    path = critical_path(summary.tasks)
    console.print(
        "critical path: "
        + " -> ".join(f"{t.task_id.rpartition('-')[0]} ({t.duration_s:.0f} s)" for t in path)
        + f" = {sum(t.duration_s for t in path):.0f} s (the steps depend on each other)",
        markup=False,
        highlight=False,
    )
    console.print(_ledger(steps, model_is_scripted=model is None))
    return steps


def _print_outcome(steps: list[PipelineStep], console: Console) -> None:
    passed = {step.skill: step for step in steps if step.result.status is TaskStatus.PASSED}
    if "lora-sft" in passed:
        console.print(f"loss curve: {passed['lora-sft'].outputs / 'loss_curve.png'}", markup=False)
    if "eval" in passed:
        metrics = json.loads((passed["eval"].outputs / "metrics.json").read_text())
        base, adapter = metrics["base"], metrics["adapter"]
        console.print(
            f"final metrics (eval.jsonl, {metrics['examples']} rows): loss {base['loss']:.3f} -> "
            f"{adapter['loss']:.3f}, perplexity {base['perplexity']:.1f} -> "
            f"{adapter['perplexity']:.1f}, token accuracy {base['token_accuracy']:.2f} -> "
            f"{adapter['token_accuracy']:.2f} (base -> adapter)",
            markup=False,
        )


def _ledger(steps: list[PipelineStep], *, model_is_scripted: bool) -> Table:
    """Actual tokens per step, and what classic round-trip tool calling would have cost."""
    scripted = model_is_scripted
    table = Table(
        "step",
        "attempts",
        "tokens in",
        "tokens out",
        "classic in (seq.)",
        title="token ledger" + (" (scripted model: replayed replies)" if scripted else ""),
        title_justify="left",
    )
    total_in = total_out = 0
    for step in steps:
        usage, classic = step.result.usage, step.result.usage_classic_estimate
        total_in, total_out = total_in + usage.total_input_tokens, total_out + usage.output_tokens
        table.add_row(
            step.skill,
            str(step.result.attempts),
            str(usage.total_input_tokens),
            str(usage.output_tokens),
            str(classic.sequential.uncached.total_input_tokens) if classic else "-",
        )
    table.add_row("total", "", str(total_in), str(total_out), "")
    return table
