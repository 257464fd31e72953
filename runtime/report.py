"""A run's report: code-mode tokens against the classic flow's, Critical Steps, and time.

``write_report`` writes ``report.md`` and ``report.html`` (the same content plus two embedded
PNG plots) from a ``RunSummary``; the broker fills one from its database. Both files come from
one list of blocks, so they cannot disagree. ``python -m execloop.runtime.report SUMMARY.json
OUT_DIR`` does the same for a RunSummary saved as JSON.

Every token figure names who counted it: the classic side is counted by the project's
tokenizer, the code side is what the model's API reported (``TaskSummary.usage_counted_by``).
Their ratios therefore cross tokenizers; the report says so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from execloop.runtime.classic import ClassicEstimate, ClassicFlow, input_cost_units
from execloop.runtime.ledger import Usage
from execloop.runtime.report_plots import (
    Block,
    Heading,
    Plot,
    Span,
    Table,
    timeline_png,
    to_html,
    to_markdown,
    tokens_png,
)
from execloop.runtime.task import ErrorKind, TaskStatus
from execloop.runtime.tokens import TOKENIZER_NAME

__all__ = [
    "RunSummary",
    "StageSummary",
    "TaskSummary",
    "critical_path",
    "critical_steps",
    "write_report",
]


class StageSummary(BaseModel):
    """One stage of a run: the orchestrator's own steps, then its sub-agents in parallel."""

    model_config = ConfigDict(frozen=True)

    name: str
    orchestration_steps: int = Field(default=0, ge=0)


class TaskSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_id: str
    status: TaskStatus
    error_kind: ErrorKind | None = None
    attempts: int = Field(ge=0)
    steps: int | None = Field(default=None, ge=0, description="Sub-agent steps; None: attempts.")
    stage: str = "main"
    usage: Usage
    usage_counted_by: str = "model API"
    classic: ClassicEstimate | None = None
    started_at: datetime
    ended_at: datetime
    scripted: bool = False

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def agent_steps(self) -> int:
        return self.attempts if self.steps is None else self.steps


class RunSummary(BaseModel):
    """Stages not listed here have no orchestration steps; they are ordered as first seen."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    tasks: list[TaskSummary]
    stages: list[StageSummary] = Field(default_factory=list)


def critical_steps(run: RunSummary) -> list[tuple[str, int, TaskSummary | None]]:
    """Per stage: (name, orchestration steps, slowest sub-agent by steps). Critical Steps is
    Σ over stages of (orchestration steps + the slowest sub-agent's steps)."""
    stages = {stage.name: stage.orchestration_steps for stage in run.stages}
    for task in run.tasks:
        stages.setdefault(task.stage, 0)
    rows = []
    for name, orchestration in stages.items():
        members = [task for task in run.tasks if task.stage == name]
        slowest = max(members, key=lambda task: task.agent_steps, default=None)
        rows.append((name, orchestration, slowest))
    return rows


def critical_path(tasks: Sequence[TaskSummary]) -> list[TaskSummary]:
    """The chain that set the end time: from the last task to end, step back each time to the
    task that ended last before the current one started (what it waited for, by the clock)."""
    if not tasks:
        return []
    path = [max(tasks, key=lambda task: task.ended_at)]
    while True:
        start = path[-1].started_at
        # started strictly earlier: zero-length tasks cannot loop
        before = [t for t in tasks if t.ended_at <= start and t.started_at < start]
        if not before:
            return path[::-1]
        path.append(max(before, key=lambda task: task.ended_at))


_Pick = Callable[[ClassicEstimate], ClassicFlow]
_FLOWS: list[tuple[str, _Pick]] = [("seq.", lambda e: e.sequential), ("par.", lambda e: e.parallel)]


def write_report(run: RunSummary, out_dir: Path) -> list[Path]:
    """Write report.md and report.html into ``out_dir``; return their paths."""
    paired = [(t, t.classic) for t in run.tasks if t.classic is not None]
    code = _counted_by({t.usage_counted_by for t in run.tasks}, "-")
    tok = _counted_by({e.tokenizer for _, e in paired}, TOKENIZER_NAME)
    blocks: list[Block] = [Heading(1, f"execloop run {run.run_id}")]
    if any(task.scripted for task in run.tasks):
        blocks.append("**Scripted model**: tasks marked (scripted) were answered by a script.")
    blocks.append(
        f"Classic-flow figures are counted by {tok[1:-1]}; code-mode figures are as counted "
        f"by {code[1:-1]}. Ratios are classic / code and cross the two counts. "
        f"{len(paired)} of {len(run.tasks)} tasks have a classic estimate; classic totals and "
        "all ratios cover those tasks."
    )
    blocks += _token_blocks(run, paired, code, tok)
    blocks += _cost_blocks(paired, code, tok)
    blocks += _steps_blocks(run)
    blocks += _time_blocks(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, page = out_dir / "report.md", out_dir / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(run.run_id, blocks), encoding="utf-8")
    return [markdown, page]


def _token_blocks(
    run: RunSummary, paired: list[tuple[TaskSummary, ClassicEstimate]], code: str, tok: str
) -> list[Block]:
    headers = ["task", "status", "attempts", f"code input {code}", f"code output {code}"]
    for name, _ in _FLOWS:
        headers += [f"classic {name} rounds", f"classic {name} input {tok}"]
        headers += [f"classic {name} output {tok}", f"{name} ratio (input)"]
    rows: list[list[str]] = []
    for task in run.tasks:
        status = task.status.value + (f" ({task.error_kind.value})" if task.error_kind else "")
        row = [task.task_id, status + (" (scripted)" if task.scripted else "")]
        row += [str(task.attempts), _n(task.usage.total_input_tokens), _n(task.usage.output_tokens)]
        for _, pick in _FLOWS:
            row += _flow_cells(task.usage, None if task.classic is None else pick(task.classic))
        rows.append(row)
    code_total = sum((t.usage for t in run.tasks), Usage())
    paired_code = sum((t.usage for t, _ in paired), Usage())
    total = ["**total**", "", str(sum(t.attempts for t in run.tasks))]
    total += [_n(code_total.total_input_tokens), _n(code_total.output_tokens)]
    for _, pick in _FLOWS:
        usage = sum((pick(e).uncached for _, e in paired), Usage())
        total += ["", _n(usage.total_input_tokens), _n(usage.output_tokens)]
        total.append(_x(usage.total_input_tokens, paired_code.total_input_tokens))
    blocks: list[Block] = [
        Heading(2, "Tokens per task"),
        "Input = every input token (cache reads and writes included); classic without caching.",
        Table(headers, [*rows, total]),
    ]
    if paired:
        series = {
            f"code {code}": [t.usage.total_tokens for t, _ in paired],
            f"classic sequential {tok}": [e.sequential.uncached.total_tokens for _, e in paired],
            f"classic parallel {tok}": [e.parallel.uncached.total_tokens for _, e in paired],
        }
        title = f"Tokens per task, input + output, classic without caching\n{tok}"
        png = tokens_png([t.task_id for t, _ in paired], series, title=title, ylabel="tokens")
        blocks.append(Plot("Tokens per task: code vs classic sequential vs parallel", png))
    return blocks


def _cost_blocks(
    paired: list[tuple[TaskSummary, ClassicEstimate]], code: str, tok: str
) -> list[Block]:
    headers = ["task", f"code {code}"]
    for name, _ in _FLOWS:
        headers += [f"classic {name} no cache {tok}", f"classic {name} cached {tok}"]
        headers.append(f"{name} ratio (cached)")
    rows = []
    for label, pairs in [*[(t.task_id, [(t, e)]) for t, e in paired], ("**total**", paired)]:
        actual = sum(input_cost_units(t.usage) for t, _ in pairs)
        row = [label, _n(actual)]
        for _, pick in _FLOWS:
            cached = sum(pick(e).cached_cost_units for _, e in pairs)
            row += [_n(sum(pick(e).uncached_cost_units for _, e in pairs)), _n(cached)]
            row.append(_x(cached, actual))
        rows.append(row)
    return [
        Heading(2, "Input cost units"),
        "Input side only, in units of one uncached input token: input 1.0, cache read 0.1, "
        "cache write 1.25. Output tokens are in the table above: their price depends on the model.",
        Table(headers, rows),
    ]


def _steps_blocks(run: RunSummary) -> list[Block]:
    stages = critical_steps(run)
    rows = []
    for name, orchestration, slowest in stages:
        steps = 0 if slowest is None else slowest.agent_steps
        label = "-" if slowest is None else f"{slowest.task_id} ({steps})"
        rows.append([name, str(orchestration), label, str(orchestration + steps)])
    critical = sum(int(row[3]) for row in rows)
    every = sum(o for _, o, _ in stages) + sum(t.agent_steps for t in run.tasks)
    headers = ["stage", "orchestration steps", "slowest sub-agent (steps)", "critical steps"]
    return [
        Heading(2, "Critical Steps"),
        "Critical Steps = Σ over stages of (orchestration steps + the slowest sub-agent's steps).",
        Table(headers, [*rows, ["**Critical Steps**", "", "", str(critical)]]),
        f"Steps taken by all agents: {every}; on the critical path: {critical}.",
    ]


def _time_blocks(run: RunSummary) -> list[Block]:
    if not run.tasks:
        return []
    origin = min(task.started_at for task in run.tasks)
    wall = (max(task.ended_at for task in run.tasks) - origin).total_seconds()
    serial = sum(task.duration_s for task in run.tasks)
    path = critical_path(run.tasks)
    on_path = {id(task) for task in path}
    speedup = f"{serial / wall:.2f}x" if wall > 0 else "-"
    spans = [
        Span(
            label=task.task_id,
            start_s=(task.started_at - origin).total_seconds(),
            end_s=(task.ended_at - origin).total_seconds(),
            critical=id(task) in on_path,
        )
        for task in run.tasks
    ]
    rows = [
        [span.label, task.stage, str(task.agent_steps), f"{span.start_s:.1f}", f"{span.end_s:.1f}"]
        for span, task in zip(spans, run.tasks, strict=True)
    ]
    for row, task in zip(rows, run.tasks, strict=True):
        row += [f"{task.duration_s:.1f}", "yes" if id(task) in on_path else ""]
    chain = " → ".join(f"{task.task_id} ({task.duration_s:.1f} s)" for task in path)
    title = f"Run {run.run_id}: tasks over time, critical path in red"
    return [
        Heading(2, "Time"),
        Table(
            ["serial time (Σ task durations)", "wall time", "speedup"],
            [[f"{serial:.1f} s", f"{wall:.1f} s", speedup]],
        ),
        f"Critical path (what the end time waited for, by the clock): {chain}.",
        Table(["task", "stage", "steps", "start (s)", "end (s)", "duration (s)", "critical"], rows),
        Plot(
            "Timeline: tasks over time, critical path highlighted", timeline_png(spans, title=title)
        ),
    ]


def _counted_by(names: set[str], default: str) -> str:
    """The label put beside figures: who counted them."""
    return "[" + ", ".join(sorted(names) or [default]) + "]"


def _flow_cells(actual: Usage, flow: ClassicFlow | None) -> list[str]:
    if flow is None:
        return ["-"] * 4
    classic = flow.uncached
    ratio = _x(classic.total_input_tokens, actual.total_input_tokens)
    return [str(flow.rounds), _n(classic.total_input_tokens), _n(classic.output_tokens), ratio]


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _x(classic: float, actual: float) -> str:
    return f"{classic / actual:.1f}x" if actual else "-"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m execloop.runtime.report SUMMARY.json OUT_DIR", file=sys.stderr)
        return 2
    run = RunSummary.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    for path in write_report(run, Path(args[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
