"""``execloop demo``, ``execloop runs`` and ``execloop report``: broker runs from the CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from execloop.errors import ConfigError, ExecloopError
from execloop.runtime.task import Result, TaskStatus
from execloop.runtime.terminal import printable
from execloop.sandboxes.progress import ProgressEvent

if TYPE_CHECKING:
    from execloop.runtime.store import TaskStore

__all__ = ["demo_command", "report_command", "runs_command"]

console = Console(stderr=True)
out = Console()


def _results_table(results: list[Result], title: str) -> Table:
    table = Table(
        "task",
        "status",
        "attempts",
        "checks",
        "input/output tokens",
        "classic flow input (estimated)",
        title=title,
        title_justify="left",
    )
    for result in results:
        classic = result.usage_classic_estimate
        table.add_row(
            result.task_id,
            result.status.value + (f" ({result.error_kind.value})" if result.error_kind else ""),
            str(result.attempts),
            f"{sum(c.passed for c in result.checks)}/{len(result.checks)}",
            f"{result.usage.total_input_tokens}/{result.usage.output_tokens}",
            str(classic.sequential.uncached.total_input_tokens) if classic else "-",
        )
    return table


def _writable_dir(path: Path, flag: str) -> Path:
    """``path`` as a directory this process can write into, created if missing; otherwise a
    one-line error naming it and why, before any work is done."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path}: cannot create the directory ({exc.strerror}); choose another {flag}"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: the directory is not writable; choose another {flag}")
    return path


def _first_execloop_error(error: BaseException) -> ExecloopError | None:
    """An execloop error raised inside task groups, to be shown as one line."""
    if isinstance(error, BaseExceptionGroup):
        found = (_first_execloop_error(inner) for inner in error.exceptions)
        return next((e for e in found if e is not None), None)
    return error if isinstance(error, ExecloopError) else None


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("execloop-demo"),
    show_default=True,
    help="Directory for the database (execloop.db) and the report; a re-run resumes here.",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--pipeline",
    is_flag=True,
    help="Run the post-training pipeline instead: data-clean -> data-balance -> hparam-config "
    "-> lora-sft -> eval, each step fed by the one before (needs a train image).",
)
@click.option(
    "--model",
    "model_spec",
    help="With --pipeline: the model writing the scripts [default: scripted; "
    "anthropic:claude-sonnet-4-5 when ANTHROPIC_API_KEY is set].",
)
@click.option(
    "--train-image",
    help="With --pipeline: the image of the training steps [default: execloop/train-cpu; "
    "execloop/train on a GPU host].",
)
def demo_command(
    out_dir: Path,
    concurrency: int,
    pipeline: bool,
    model_spec: str | None,
    train_image: str | None,
) -> None:
    """Keyless demo: a realistic mix, mostly tasks calling a shop's host tools (6 to 20 calls
    each) plus every built-in skill's example, solved through the broker by SCRIPTED models
    (replies replayed, not generated), checked in Docker sandboxes, with the token ledger's
    report. Re-run on the same --out after a crash, it resumes the crashed run's unfinished
    tasks. --pipeline runs the post-training pipeline."""
    from execloop.runtime.broker import Broker, summarize_run
    from execloop.runtime.demo import demo_mix, demo_model, demo_registry, demo_tasks
    from execloop.runtime.report import RunSummary, write_report
    from execloop.runtime.store import TaskStore

    if not pipeline and (model_spec or train_image):
        raise ConfigError("--model and --train-image apply to --pipeline only: add --pipeline")
    if pipeline:
        _pipeline_demo(out_dir, model_spec, train_image or "execloop/train-cpu")
    _writable_dir(out_dir, "--out")  # refused before any work
    store = TaskStore(out_dir / "execloop.db")
    tasks = demo_tasks()
    console.print(
        f"[yellow]SCRIPTED MODEL: {demo_mix()}; every reply is replayed, no LLM is called.[/]"
    )

    async def main() -> tuple[str, list[Result], list[Result], RunSummary]:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        async with Broker(
            db=store,
            model=demo_model,
            max_concurrency=concurrency,
            registry=demo_registry,
        ) as broker:
            resumed = list(broker.resumed)
            if resumed:
                console.print(
                    f"resuming {len(resumed)} unfinished task(s) of an earlier run on this "
                    f"database: {', '.join(resumed)}",
                    markup=False,
                    highlight=False,
                )
            ids = [await broker.submit(task) for task in tasks]
            with Progress(*columns, console=console) as progress:
                bar = progress.add_task("tasks checked and verified", total=len(ids + resumed))
                results: dict[str, Result] = {}

                async def wait(task_id: str) -> None:
                    results[task_id] = await broker.result(task_id)
                    progress.advance(bar)

                async with anyio.create_task_group() as group:
                    for task_id in ids + resumed:
                        group.start_soon(wait, task_id)
            summary = summarize_run(broker.store, broker.run_id, include=resumed)
            return (
                broker.run_id,
                [results[i] for i in ids],
                [results[i] for i in resumed],
                summary,
            )

    try:
        run_id, results, resumed, summary = anyio.run(main)
    except BaseExceptionGroup as group:
        error = _first_execloop_error(group)
        if error is None:
            raise
        raise error from group
    finally:
        store.close()
    out.print(_results_table(results, f"run {run_id} (scripted model)"))
    if resumed:
        out.print(_results_table(resumed, "resumed from an earlier run (scripted model)"))
    for path in write_report(summary, out_dir):
        out.print(f"report: {path}")
    sys.exit(0 if all(r.status is TaskStatus.PASSED for r in results + resumed) else 1)


def _pipeline_demo(out_dir: Path, model_spec: str | None, train_image: str) -> None:
    from execloop.runtime.pipeline import STEPS
    from execloop.runtime.pipeline_cli import pipeline_model, run_pipeline

    model, label = pipeline_model(model_spec)  # a bad --model is refused before any work
    _writable_dir(out_dir, "--out")
    console.print(f"[yellow]{label}[/]" if model is None else label, highlight=False)
    steps = run_pipeline(out_dir, model=model, train_image=train_image, console=out)
    passed = len(steps) == len(STEPS) and all(s.result.status is TaskStatus.PASSED for s in steps)
    sys.exit(0 if passed else 1)


_db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="SQLite database of the broker's runs (opened read-only).",
)


@click.command("runs")
@click.argument("run_id", required=False)
@_db_option
@click.option("--json", "as_json", is_flag=True)
def runs_command(run_id: str | None, db: Path, as_json: bool) -> None:
    """List the broker runs recorded in DB; with RUN_ID, that run's tasks and the progress
    their scripts reported (the latest events and a thinned history; all of it with --json)."""
    from execloop.runtime.store import TaskStore

    store = TaskStore(db, read_only=True)
    if run_id is not None:
        try:
            _show_run(store, run_id, db, as_json)
        finally:
            store.close()
        return
    rows = []
    for run in store.runs():
        results = [store.result(t.id) for t in store.tasks(run["id"])]
        done = [r for r in results if r is not None]
        rows.append(
            {
                "run": run["id"],
                "tasks": len(results),
                "done": len(done),
                "passed": sum(r.status is TaskStatus.PASSED for r in done),
            }
        )
    store.close()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("run", "tasks", "with a result", "passed")
    for row in rows:
        table.add_row(row["run"], str(row["tasks"]), str(row["done"]), str(row["passed"]))
    out.print(table)


def _show_run(store: TaskStore, run_id: str, db: Path, as_json: bool) -> None:
    if run_id not in {run["id"] for run in store.runs()}:
        raise ConfigError(f"no run {run_id!r} in {db}; `execloop runs --db {db}` lists them")
    rows: list[dict[str, Any]] = []
    for task in store.tasks(run_id):
        result = store.result(task.id)
        rows.append(
            {
                "task": task.id,
                "state": task.state,
                "status": None if result is None else result.status.value,
                "attempts": None if result is None else result.attempts,
                "progress": [r.model_dump(mode="json") for r in store.progress(task.id)],
            }
        )
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("task", "status", "attempts", "latest progress", "events kept")
    for row in rows:
        latest = row["progress"][-1] if row["progress"] else None
        shown = "-"
        if latest is not None:
            event = ProgressEvent.model_validate(latest["event"])
            shown = f"attempt {latest['attempt']}: {event.describe()}"
        cells = (row["task"], row["status"] or row["state"], str(row["attempts"] or "-"), shown)
        table.add_row(*(Text(printable(cell)) for cell in cells), str(len(row["progress"])))
    out.print(table)


@click.command("report")
@click.argument("run_id")
@_db_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
)
def report_command(run_id: str, db: Path, out_dir: Path) -> None:
    """Write report.md and report.html (with plots) for RUN_ID."""
    from execloop.runtime.broker import summarize_run
    from execloop.runtime.report import write_report
    from execloop.runtime.store import TaskStore

    store = TaskStore(db, read_only=True)
    if run_id not in {run["id"] for run in store.runs()}:
        raise ConfigError(f"no run {run_id!r} in {db}; `execloop runs --db {db}` lists them")
    _writable_dir(out_dir, "--out")
    summary = summarize_run(store, run_id)
    store.close()
    for path in write_report(summary, out_dir):
        out.print(str(path))
