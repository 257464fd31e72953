"""``execloop task``: run one sub-agent task with a live view of its attempts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.cli_boundary import flags
from execloop.runtime.cli_sandbox import (
    check_out_dir,
    out_option,
    sandbox_options,
    sandbox_spec,
    spec_fields,
)
from execloop.runtime.config import Config
from execloop.runtime.loop import LoopEvent
from execloop.runtime.task import Budget, Result, Task, TaskStatus
from execloop.runtime.task_run import TaskRun, parse_params, task_json
from execloop.runtime.terminal import printable

__all__ = ["task_command"]

console = Console(stderr=True)
out = Console()

_EXIT = {
    TaskStatus.PASSED: 0,
    TaskStatus.FAILED: 1,
    TaskStatus.BUDGET_EXHAUSTED: 3,
    TaskStatus.ERROR: 2,
}


_BUDGET_FLAGS = {
    "max_attempts": "--max-attempts",
    "max_tokens": "--max-tokens",
    "max_wall_time_s": "--max-time",
}
_TASK_FLAGS = {"goal": "GOAL", "inputs": "--input", "checks": "--check", "skill": "--skill"}


class _AttemptTable:
    """A live table, one row per attempt, filled in as events arrive."""

    def __init__(self, scripted_label: str) -> None:
        self.rows: dict[int, dict[str, str]] = {}
        self.title = f"attempts{scripted_label}"

    def on_event(self, event: LoopEvent) -> None:
        if event.kind == "attempt":
            self.rows[event.attempt] = {"exit": "…", "checks": "", "tokens": "", "note": ""}
        row = self.rows.get(event.attempt)
        if row is None:  # an event outside any attempt (a task refused before attempt 1)
            return
        if event.kind == "reply":
            usage = event.data["usage"]
            row["tokens"] = f"{usage.total_input_tokens} in / {usage.output_tokens} out"
            if event.data["script"] is None:
                row["exit"], row["note"] = "-", "no script in the reply"
        elif event.kind == "ran":
            run = event.data["run"]
            row["exit"] = f"{run.exit_reason.value} ({run.exit_code})"
        elif event.kind == "checked":
            outcomes = event.data["outcomes"]
            passed = sum(o.passed for o in outcomes)
            row["checks"] = f"{passed}/{len(outcomes)}"
            failed = [o.name for o in outcomes if not o.passed]
            row["note"] = ("failed: " + ", ".join(failed))[:70] if failed else "all passed"

    def __rich__(self) -> Table:
        table = Table(
            "attempt", "exit", "checks", "tokens", "", title=self.title, title_justify="left"
        )
        for number, row in self.rows.items():
            cells = (row["exit"], row["checks"], row["tokens"], row["note"])
            table.add_row(str(number), *(Text(printable(cell)) for cell in cells))
        return table


def _summary(result: Result) -> None:
    colour = "green" if result.status is TaskStatus.PASSED else "red"
    scripted = (
        " [yellow](scripted model: replies were replayed, not generated)[/]"
        if result.scripted
        else ""
    )
    console.print(
        f"[bold {colour}]{result.status.value}[/] after {result.attempts} attempt(s), "
        f"{result.timings.total_s:.1f} s; tokens {result.usage.total_input_tokens} in / "
        f"{result.usage.output_tokens} out ({escape(result.model)}){scripted}",
        soft_wrap=True,
    )
    for outcome in result.checks:  # reasons quote the agent's output: never markup or escapes
        mark = "[green]✓[/]" if outcome.passed else "[red]✗[/]"
        text = outcome.name + ("" if outcome.passed else f": {outcome.reason}")
        console.print(f"  {mark} {escape(printable(text))}", highlight=False, soft_wrap=True)
    if result.error:
        error = escape(printable(result.error))
        kind = f"{result.error_kind.value} error: " if result.error_kind else ""
        console.print(f"  [red]{kind}{error}[/]", highlight=False, soft_wrap=True)
    if result.answer:
        console.rule("answer", style="dim")
        click.echo(printable(result.answer) if out.is_terminal else result.answer)


@click.command("task")
@click.argument("goal")
@click.option("--skill", "skill_name", help="A skill name (see `execloop skills list`).")
@click.option(
    "--skill-dir",
    "skill_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of skills searched after the built-in ones (repeatable).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Input file (lands as its name) or directory (lands as DIR/...) (repeatable).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A skill input (VALUE is JSON, else a string), written into the task's task.json "
    "over an --input task.json; checked against the skill's inputs schema (repeatable).",
)
@click.option(
    "--model",
    "model_spec",
    help="anthropic:MODEL | openai:BASE_URL#MODEL | scripted:FILE [default: execloop.toml's].",
)
@click.option(
    "--check",
    "expressions",
    multiple=True,
    help="An expression over result.json that must hold, e.g. 'result[\"rows\"] > 0' (repeatable).",
)
@sandbox_options
@click.option(
    "--checkpoint-size",
    help="Give the task a checkpoint directory holding at most this much (e.g. 2g), at "
    "$EXECLOOP_CHECKPOINT_DIR in every attempt: a killed run resumes from it [default: none].",
)
@click.option("--max-attempts", type=int, default=5, show_default=True)
@click.option("--max-tokens", type=int, default=400_000, show_default=True)
@click.option("--max-time", type=float, default=1800.0, show_default=True, help="Seconds.")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run through the broker on this SQLite database (then `execloop runs`/`report` "
    "show the task) [default: execloop.toml's db, else no database].",
)
@out_option("Keep the passing task's verified workspace (script as main.py, outputs) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the Result as JSON.")
@click.pass_obj
def task_command(
    config: Config,
    /,
    goal: str,
    skill_name: str | None,
    skill_dirs: tuple[Path, ...],
    inputs: tuple[Path, ...],
    params: tuple[str, ...],
    model_spec: str | None,
    expressions: tuple[str, ...],
    max_attempts: int,
    max_tokens: int,
    max_time: float,
    db: Path | None,
    out_dir: Path | None,
    as_json: bool,
    **limits: Any,
) -> None:
    """Have a sub-agent solve GOAL with a script, checked until it passes."""
    from execloop.runtime.inputs import Inputs
    from execloop.runtime.models import parse_model
    from execloop.runtime.skills import resolve_skill

    skill_dirs = (*skill_dirs, *config.skill_dirs)
    with flags(_BUDGET_FLAGS):  # every option is checked before a model or sandbox is made
        budget = Budget(max_attempts=max_attempts, max_tokens=max_tokens, max_wall_time_s=max_time)
    with flags("--check"):
        checks = tuple(ExpressionCheck(expr=expr) for expr in expressions)
    spec = sandbox_spec(config.sandbox_fields(), **spec_fields(limits))
    with flags("--skill"):
        skill = resolve_skill(skill_name, skill_dirs=skill_dirs) if skill_name else None
    values = parse_params(params)
    if out_dir is not None:
        out_dir = check_out_dir(out_dir)
    model_spec = model_spec or config.model
    if model_spec is None:
        raise click.UsageError("--model is required (or set model in execloop.toml)")
    with flags("--model"):
        model = parse_model(model_spec)
    db = db or config.db
    with task_json(skill, inputs, values) as task_inputs:
        with flags("--input"):  # a refused input is one clear error here, before anything starts
            Inputs.collect(task_inputs)
        with flags(_TASK_FLAGS):
            task = Task(
                goal=goal,
                skill=skill_name,
                inputs=task_inputs,
                checks=checks,
                budget=budget,
                sandbox=spec,
            )
        if model.scripted:
            console.print(
                f"[yellow]SCRIPTED MODEL ({escape(model.name)}): replies are replayed from a "
                "file, not generated by an LLM.[/]",
                soft_wrap=True,
            )
        view = _AttemptTable(" — scripted model" if model.scripted else "")
        run = TaskRun(
            task=task,
            model=model,
            skill=skill,
            skill_dirs=skill_dirs,
            config=config,
            db=db,
            out_dir=out_dir,
            on_event=view.on_event,
        )
        with Live(view, console=console, refresh_per_second=8, transient=as_json):
            result = anyio.run(run.run)
    console.print()
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        _summary(result)
        if out_dir is not None and result.status is TaskStatus.PASSED:
            console.print(f"verified workspace kept in {escape(str(out_dir))}", highlight=False)
        if db is not None:
            console.print(
                f"stored in {escape(str(db))} (run {run.run_id}): "
                f"execloop runs --db {escape(str(db))}",
                highlight=False,
            )
    sys.exit(_EXIT[result.status])
