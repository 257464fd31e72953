"""The pages of ``execloop bench tokens``: a markdown table with every column defined once, and
a plot of cumulative input tokens per request for both flows on one task."""

from __future__ import annotations

from pathlib import Path

from execloop.runtime.benchmarks.figures import (
    MANY_CALLS,
    Spread,
    Summary,
    TaskComparison,
    TokenBench,
)
from execloop.runtime.report_model import Method
from execloop.runtime.report_plots import turns_png

__all__ = ["plot_cumulative", "render_markdown"]

_SOURCES = {
    "execloop": "execloop's suite (a shop's tools, 1 to 20 calls)",
    "bfcl-v3-multi-turn-base": "BFCL v3 multi-turn base (bfcl-eval; user turns joined into one "
    "request, ground-truth calls as the plan, BFCL's state checker as the check)",
}
_COLUMNS = (
    ("calls", "tool calls the task took (the classic agent's turns minus its final answer)"),
    ("code in / classic in", "input tokens of all requests, every kind (cached or not)"),
    (
        "est. ÷ meas.",
        "the ledger's classic estimate (from the code-mode run alone) divided by "
        "the measured classic input",
    ),
    ("input saved", "1 - code in ÷ classic in, no caching"),
    (
        "cached input saved",
        "the same with prompt caching priced on both sides: cache reads "
        "0.1x, writes 1.25x an input token",
    ),
    ("cached cost saved", "the same with output tokens added at {output:g}x an input token"),
    (
        "break-even",
        "how many code-mode attempts cost as much as the one classic run "
        "(caching priced, output included)",
    ),
    ("ok", "the task's check passed on that flow's own shop and answer (code / classic)"),
    (
        "wall s",
        "wall time of each flow (code / classic); code mode includes the sandbox and "
        "the re-verification of its checks",
    ),
)


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _spread(label: str, spread: Spread | None, *, ratio: bool = False) -> str:
    if spread is None:
        return f"- {label}: no task qualifies"
    show = (lambda v: f"{v:.3f}") if ratio else _pct
    return (
        f"- {label}: median {show(spread.median)}, range {show(spread.low)} to "
        f"{show(spread.high)} ({spread.tasks} tasks)"
    )


def _summary(source: str, summary: Summary) -> list[str]:
    return [
        f"**{_SOURCES.get(source, source)}**",
        "",
        _spread("input tokens saved", summary.input_savings),
        _spread("input cost saved, caching priced on both sides", summary.cached_input_savings),
        _spread(
            "cost saved with output, caching priced on both sides", summary.cached_cost_savings
        ),
        _spread("classic estimate ÷ measured (every task)", summary.estimate_ratio, ratio=True),
        "",
    ]


def _row(c: TaskComparison) -> str:
    ratio = f"{c.estimate_ratio:.3f}" if c.estimate_ratio is not None else "-"
    ok = f"{'yes' if c.code.success else 'NO'} / {'yes' if c.classic.success else 'NO'}"
    wall = f"{c.code.wall_s or 0:.1f} / {c.classic.wall_s or 0:.1f}"
    cells = [
        c.task,
        str(c.calls),
        f"{c.code.input_tokens:,} / {c.classic.input_tokens:,}",
        ratio,
        _pct(c.input_savings),
        _pct(c.cached_input_savings),
        _pct(c.cached_cost_savings),
        f"{c.break_even_attempts:.1f}",
        ok,
        wall,
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(bench: TokenBench, *, plot: str | None = None) -> str:
    """The page; ``plot`` is the plot's path relative to the page, if one was drawn."""
    how = (
        "replayed: both flows talked to a loopback model that followed a recorded plan (code "
        "mode submits the task's script; the classic agent makes the calls that script made), "
        f"and every request was counted with one tokenizer, {bench.tokenizer}"
        if bench.method == Method.REPLAYED
        else "measured live: usage as the provider reported it"
    )
    lines = [
        "# Token benchmark: code mode beside a classic agent",
        "",
        "*Classic* is the agent a framework runs: one tool call per turn, the whole "
        "conversation (system prompt, tool schemas, task, every call and result so far) sent "
        "again on every turn. *Code mode* is execloop: one script calls the tools inside a "
        "sandbox and only its short answer comes back.",
        "",
        f"- date: {bench.date}; model: {bench.model}; sandbox backend: {bench.backend}",
        f"- method: {how}",
        "- prompt caching: priced on both sides (reads "
        f"{bench.weights['cache_read']:g}x, writes {bench.weights['cache_write']:g}x), the "
        "cache empty at the start of each flow of each task; output at "
        f"{bench.weights['output']:g}x an input token",
        "- checks: each flow works on its own fresh copy of the tools' state; the same check "
        "judges its effects and its answer",
        "- code mode's tool listing: "
        + (
            "full docstrings"
            if bench.tool_docs == "full"
            else "each tool's first sentence (full docs via help() in the sandbox); replayed, "
            "the script is given, so whether a model writes it from the shorter listing "
            "shows only when measured live"
        ),
        "",
        f"## Results on tasks with at least {MANY_CALLS} tool calls, per suite",
        "",
        *(
            line
            for source, summary in bench.summaries.items()
            for line in _summary(source, summary)
        ),
        "| task | calls | code in / classic in | est. ÷ meas. | input saved | cached input "
        "saved | cached cost saved | break-even | ok | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        *(_row(c) for c in bench.tasks),
        "",
        "Columns:",
        "",
        *(
            f"- **{name}**: {text.format(output=bench.weights['output'])}"
            for name, text in _COLUMNS
        ),
        "",
        "Where the tokens go: code mode sends one request whose size does not grow with the "
        "calls (rules, the tools' Python signatures, the task); the classic agent re-sends its "
        "whole conversation on every turn, so each result is read again on every later turn. "
        "Tasks with few calls or small results (a one-call lookup) cost less the classic way.",
    ]
    if plot is not None:
        lines += ["", f"![cumulative input tokens per request]({plot})"]
    return "\n".join(lines) + "\n"


def plot_cumulative(bench: TokenBench, path: Path, *, task: str | None = None) -> Path:
    """Cumulative input tokens per request for both flows on ``task`` (default: the task with
    the most calls), as a PNG at ``path``: the report's turn-by-turn plot (``turns_png``)."""
    chosen = (
        max(bench.tasks, key=lambda c: c.calls)
        if task is None
        else next(c for c in bench.tasks if c.task == task)
    )
    classic, code = chosen.classic.cumulative_input, chosen.code.cumulative_input
    png = turns_png(
        {
            "classic agent": _per_request(classic),
            f"code mode ({len(code)} request)": _per_request(code),
        },
        title=f"{chosen.task}: {chosen.calls} tool calls ({bench.method})",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def _per_request(cumulative: list[int]) -> list[int]:
    return [now - before for before, now in zip([0, *cumulative], cumulative, strict=False)]
