"""A run's report for people: one sentence per task, then the tables (every column defined once,
every figure with how it was obtained), a plot of input tokens per turn for both flows on one
task, Critical Steps, and time.

``write_report`` writes ``report.md`` and ``report.html`` (the same content, plots embedded) and
the plots as PNG files beside them (``report.md`` links them), from a ``RunSummary``; the broker
fills one from its database. Both files come from one list of blocks, so they cannot disagree.
``python -m execloop.runtime.report SUMMARY.json OUT_DIR`` does the same for a saved summary.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from execloop.runtime.classic import ClassicEstimate, input_cost_units
from execloop.runtime.ledger import Usage
from execloop.runtime.report_model import FlowTokens, RunSummary, StageSummary, TaskSummary
from execloop.runtime.report_plots import (
    Block,
    Bullets,
    Heading,
    Plot,
    Table,
    to_html,
    to_markdown,
    tokens_png,
    turns_png,
)
from execloop.runtime.report_text import (
    CLASSIC_FLOW,
    CODE_MODE,
    METHODS,
    PARALLEL_ASSUMPTION,
    how_obtained,
    task_sentence,
    unfinished_sentence,
)
from execloop.runtime.report_time import critical_path, critical_steps, steps_blocks, time_blocks

__all__ = [
    "RunSummary",
    "StageSummary",
    "TaskSummary",
    "critical_path",
    "critical_steps",
    "write_report",
]

TURNS_PNG = "report-turns.png"
TOKENS_PNG = "report-tokens.png"


def write_report(run: RunSummary, out_dir: Path) -> list[Path]:
    """Write report.md and report.html (and the plots' PNG files) into ``out_dir``; return the
    two reports' paths."""
    paired = [(t, f) for t in run.tasks if (f := t.classic_figures) is not None]
    blocks: list[Block] = [Heading(1, f"execloop run {run.run_id}"), _facts(run)]
    if any(task.scripted for task in run.tasks):
        blocks.append(
            "**Scripted model**: every task marked (scripted) was answered by replies recorded "
            "in advance and played back; no LLM was called."
        )
    blocks += [Heading(2, "What happened"), CLASSIC_FLOW, CODE_MODE, _mix(run)]
    blocks.append(Bullets([task_sentence(task) for task in run.tasks]))
    if run.unfinished:
        blocks.append(Bullets([unfinished_sentence(task) for task in run.unfinished]))
    blocks += _turns_blocks(paired)
    blocks += _tasks_blocks(run)
    blocks += _token_blocks(run, paired)
    blocks += _cost_blocks(paired)
    blocks += _checks_blocks(run)
    blocks += steps_blocks(run)
    blocks += time_blocks(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    for block in blocks:
        if isinstance(block, Plot) and block.file:
            (out_dir / block.file).write_bytes(block.png)
    markdown, page = out_dir / "report.md", out_dir / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(run.run_id, blocks), encoding="utf-8")
    return [markdown, page]


def _facts(run: RunSummary) -> str:
    started = "" if run.started_at is None else f"Run started {run.started_at:%Y-%m-%d %H:%M} UTC; "
    models = sorted({t.model for t in run.tasks if t.model and not t.scripted})
    if any(task.scripted for task in run.tasks):
        models.append("scripted (recorded replies played back, no LLM called)")
    backends = sorted({task.backend for task in run.tasks if task.backend})
    passed = sum(task.status.value == "passed" for task in run.tasks)
    text = (
        f"{started}report written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Model: {', '.join(models) or run.model or 'not recorded'}. Sandbox backend: "
        f"{', '.join(backends) or 'not recorded'}. Tasks: {len(run.tasks) + len(run.unfinished)}: "
        f"{passed} passed, {len(run.tasks) - passed} finished without passing, "
        f"{len(run.unfinished)} unfinished."
    )
    return text[0].upper() + text[1:]


def _mix(run: RunSummary) -> str:
    calls = [t.classic.calls for t in run.tasks if t.classic is not None]
    with_calls = [n for n in calls if n > 0]
    if not calls:
        return "No task has a record of its tool calls."
    low, high = min(with_calls, default=0), max(with_calls, default=0)
    spread = f" ({low} to {high} calls each)" if low < high else f" ({high} calls)" * bool(high)
    return (
        f"The mix: {len(with_calls)} of {len(calls)} tasks called tools{spread}; "
        f"{len(calls) - len(with_calls)} called none. In one sentence each:"
    )


def _turns_blocks(paired: list[tuple[TaskSummary, FlowTokens]]) -> list[Block]:
    """Cumulative input per turn, both flows, on the task with the most classic turns."""
    shown = [(t, f) for t, f in paired if len(f.request_input_tokens) > 1]
    if not shown:
        return []
    task, classic = max(shown, key=lambda pair: len(pair[1].request_input_tokens))
    code = task.code_figures
    series = {f"classic flow ({how_obtained(classic)})": list(classic.request_input_tokens)}
    series[f"code mode ({how_obtained(code)})"] = list(
        code.request_input_tokens or [code.usage.total_input_tokens]
    )
    title = f"{task.task_id}: input tokens so far, turn by turn"
    turns = len(classic.request_input_tokens)
    return [
        Heading(2, "Input tokens turn by turn"),
        f"On {task.task_id}, the classic flow takes {turns} turns (one per tool call, then the "
        "answer) and re-reads the growing conversation on each, so its running total grows "
        "with the square of the calls; code mode takes one turn per attempt.",
        Plot(
            f"{task.task_id}: cumulative input tokens per turn, both flows",
            turns_png(series, title=title),
            file=TURNS_PNG,
        ),
    ]


def _tasks_blocks(run: RunSummary) -> list[Block]:
    rows = []
    for task in run.tasks:
        status = task.status.value + (f" ({task.error_kind.value})" if task.error_kind else "")
        passed = (
            f"{sum(c.passed for c in task.checks)} of {len(task.checks)}" if task.checks else "-"
        )
        calls = "-" if task.classic is None else str(task.classic.calls)
        model = " ".join(filter(None, [task.model, "(scripted)" if task.scripted else ""]))
        rows.append([task.task_id, status, str(task.attempts), passed, calls, model, task.backend])
    rows += [
        [t.task_id, f"unfinished ({t.state})", "-", "-", "-", "-", "-"] for t in run.unfinished
    ]
    headers = ["task", "result", "attempts", "checks passed", "tool calls", "model", "backend"]
    return [
        Heading(2, "Tasks"),
        Table(headers, rows),
        Bullets(
            [
                "**result**: passed (every check passed, re-checked on the kept outputs), failed "
                "(attempts used up), budget_exhausted, error, or unfinished (no result yet).",
                "**attempts**: scripts the model wrote for the task.",
                "**tool calls**: calls the passing (or last) script made to the host's tools.",
                "**model**: who wrote the scripts; (scripted) means replies played back.",
                "**backend**: the sandbox the scripts ran in.",
            ]
        ),
    ]


def _ratio(classic: float, code: float) -> str:
    return f"{classic / code:,.1f}x" if code else "-"


def _token_blocks(run: RunSummary, paired: list[tuple[TaskSummary, FlowTokens]]) -> list[Block]:
    headers = [
        "task",
        "code mode: input",
        "code mode: output",
        "code mode: how obtained",
        "classic: turns",
        "classic: input",
        "classic: output",
        "classic: how obtained",
        "classic ÷ code (input)",
        "classic, calls batched: input",
    ]
    rows: list[list[str]] = []
    for task in run.tasks:
        code = task.code_figures
        row = [task.task_id, _n(code.usage.total_input_tokens), _n(code.usage.output_tokens)]
        row.append(how_obtained(code))
        classic = task.classic_figures
        if classic is None:
            rows.append(row + ["-"] * 6)
            continue
        turns = "-" if classic.tool_rounds is None else str(classic.tool_rounds + 1)
        row += [turns, _n(classic.usage.total_input_tokens), _n(classic.usage.output_tokens)]
        row += [how_obtained(classic)]
        row.append(_ratio(classic.usage.total_input_tokens, code.usage.total_input_tokens))
        row.append(_parallel_input(task.classic))
        rows.append(row)
    code_total = sum((t.usage for t in run.tasks), Usage())
    paired_code = sum((t.usage for t, _ in paired), Usage())
    classic_total = sum((f.usage for _, f in paired), Usage())
    parallel = sum((t.classic.parallel.uncached for t, _ in paired if t.classic), Usage())
    total = ["**total**", _n(code_total.total_input_tokens), _n(code_total.output_tokens), ""]
    total += ["", _n(classic_total.total_input_tokens), _n(classic_total.output_tokens), ""]
    total += [_ratio(classic_total.total_input_tokens, paired_code.total_input_tokens)]
    total.append(_n(parallel.total_input_tokens))
    blocks: list[Block] = [
        Heading(2, "Tokens per task"),
        Table(headers, [*rows, total]),
        Bullets(
            [
                "**input**: every token the model read over all its turns (cache reads and "
                "writes included); the classic flow's without prompt caching.",
                "**output**: every token the model wrote: scripts in code mode; tool calls and "
                "the answer in the classic flow.",
                "**how obtained**: "
                + "; ".join(f"{m.value}: {w}" for m, w in METHODS.items())
                + ". The tokenizer or API that counted the figure is named after it.",
                "**turns**: model requests of the classic flow: one per tool call, plus the "
                "answer.",
                "**classic ÷ code (input)**: how many times code mode's input the classic flow "
                f"reads; the total covers the {len(paired)} of {len(run.tasks)} tasks with a "
                "classic figure.",
                f"**classic, calls batched**: {PARALLEL_ASSUMPTION}; always estimated.",
            ]
        ),
    ]
    if paired:
        series = {
            "code mode": [t.usage.total_tokens for t, _ in paired],
            "classic flow": [f.usage.total_tokens for _, f in paired],
            "classic, calls batched": [
                t.classic.parallel.uncached.total_tokens if t.classic else 0 for t, _ in paired
            ],
        }
        title = "Tokens per task (input + output), classic without prompt caching"
        png = tokens_png([t.task_id for t, _ in paired], series, title=title, ylabel="tokens")
        blocks.append(Plot("Tokens per task: code mode vs the classic flow", png, TOKENS_PNG))
    return blocks


def _parallel_input(estimate: ClassicEstimate | None) -> str:
    return "-" if estimate is None else _n(estimate.parallel.uncached.total_input_tokens)


def _cost_blocks(paired: list[tuple[TaskSummary, FlowTokens]]) -> list[Block]:
    headers = [
        "task",
        "code mode",
        "classic, no caching",
        "classic, cached",
        "classic, calls batched, cached",
        "classic cached ÷ code",
    ]
    rows = []
    for label, pairs in [*[(t.task_id, [(t, f)]) for t, f in paired], ("**total**", paired)]:
        code = sum(input_cost_units(t.usage) for t, _ in pairs)
        uncached = sum(input_cost_units(f.usage) for _, f in pairs)
        cached = sum(input_cost_units(f.cached or f.usage) for _, f in pairs)
        batched = sum(t.classic.parallel.cached_cost_units for t, _ in pairs if t.classic)
        rows.append([label, _n(code), _n(uncached), _n(cached), _n(batched), _ratio(cached, code)])
    return [
        Heading(2, "Input cost with prompt caching"),
        Table(headers, rows),
        Bullets(
            [
                "Every figure is input cost in units of one plain input token: a token read "
                "from the prompt cache costs 0.1, one written to it 1.25 (Anthropic's prices). "
                "Output is left out: its price depends on the model (see the table above).",
                "**code mode**: as the model's requests were sent (cached where the API cached).",
                "**classic, cached**: each turn reads the previous turn's whole prompt from the "
                "cache and writes only what was appended.",
            ]
        ),
    ]


def _checks_blocks(run: RunSummary) -> list[Block]:
    rows = [
        [task.task_id, check.name, "passed" if check.passed else "failed", check.reason or ""]
        for task in run.tasks
        for check in task.checks
    ]
    if not rows:
        return []
    goals = [f"**{task.task_id}**: {task.goal}" for task in run.tasks if task.goal]
    return [
        Heading(2, "Goals and checks"),
        Bullets(goals),
        Table(["task", "check", "outcome", "reason"], rows),
        "The checks are each task's fixed specification; the runtime runs them itself and, "
        "before a task passes, runs them again on its outputs kept on the host (checks that run "
        "code, in a fresh sandbox).",
    ]


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


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
