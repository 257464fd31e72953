"""``execloop demo``, ``execloop runs`` and ``execloop report``: broker runs from the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from execloop.runtime.task import Result, TaskStatus

__all__ = ["demo_command", "report_command", "runs_command"]

console = Console(stderr=True)
out = Console()
DB_HELP = "SQLite database of the broker's runs."


def _results_table(results: list[Result], title: str) -> Table:
    table = Table(
        "task",
        "status",
        "attempts",
        "checks",
        "tokens in/out",
        "classic in (seq.)",
        title=title,
        title_justify="left",
    )
    for result in results:
        classic = result.usage_classic_estimate
        table.add_row(
            result.task_id,
            result.status.value,
            str(result.attempts),
            f"{sum(c.passed for c in result.checks)}/{len(result.checks)}",
            f"{result.usage.total_input_tokens}/{result.usage.output_tokens}",
            str(classic.sequential.uncached.total_input_tokens) if classic else "-",
        )
    return table


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("execloop-demo"),
    show_default=True,
)
@click.option("--concurrency", type=int, default=4, show_default=True)
def demo_command(out_dir: Path, concurrency: int) -> None:
    """Keyless demo: every built-in skill's example, and a task calling host tools, solved
    through the broker by SCRIPTED models (replies replayed, not generated), checked in Docker
    sandboxes, with the token ledger's report."""
    from execloop.runtime.broker import Broker, summarize_run
    from execloop.runtime.demo import demo_registry, demo_tasks
    from execloop.runtime.report import write_report

    tasks, models = demo_tasks()
    console.print(
        f"[yellow]SCRIPTED MODEL: {len(tasks)} tasks whose replies are replayed from the skills' "
        "worked examples and a tools example (no LLM is called).[/]"
    )
    out_dir.mkdir(parents=True, exist_ok=True)

    async def main() -> tuple[str, list[Result]]:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        async with Broker(
            db=out_dir / "execloop.db",
            model=lambda t: models[t.id],
            max_concurrency=concurrency,
            registry=demo_registry(),
        ) as broker:
            ids = [await broker.submit(task) for task in tasks]
            with Progress(*columns, console=console) as progress:
                bar = progress.add_task("tasks checked and verified", total=len(ids))
                results: dict[str, Result] = {}

                async def wait(task_id: str) -> None:
                    results[task_id] = await broker.result(task_id)
                    progress.advance(bar)

                async with anyio.create_task_group() as group:
                    for task_id in ids:
                        group.start_soon(wait, task_id)
            return broker.run_id, [results[i] for i in ids]

    run_id, results = anyio.run(main)
    from execloop.runtime.store import TaskStore

    store = TaskStore(out_dir / "execloop.db")
    paths = write_report(summarize_run(store, run_id), out_dir)
    out.print(_results_table(results, f"run {run_id} (scripted model)"))
    for path in paths:
        out.print(f"report: {path}")
    sys.exit(0 if all(r.status is TaskStatus.PASSED for r in results) else 1)


@click.command("runs")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), required=True, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True)
def runs_command(db: Path, as_json: bool) -> None:
    """List the broker runs recorded in DB."""
    from execloop.runtime.store import TaskStore

    store = TaskStore(db)
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
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("run", "tasks", "with a result", "passed")
    for row in rows:
        table.add_row(row["run"], str(row["tasks"]), str(row["done"]), str(row["passed"]))
    out.print(table)


@click.command("report")
@click.argument("run_id")
@click.option(
    "--db",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help=DB_HELP,
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
)
def report_command(run_id: str, db: Path, out_dir: Path) -> None:
    """Write report.md and report.html (with plots) for RUN_ID."""
    from execloop.errors import ConfigError
    from execloop.runtime.broker import summarize_run
    from execloop.runtime.report import write_report
    from execloop.runtime.store import TaskStore

    store = TaskStore(db)
    if run_id not in {run["id"] for run in store.runs()}:
        raise ConfigError(f"no run {run_id!r} in {db}; `execloop runs --db {db}` lists them")
    for path in write_report(summarize_run(store, run_id), out_dir):
        out.print(str(path))
