"""How the report looks: its blocks rendered as Markdown and as HTML, and its plots as PNG bytes
(cumulative input tokens per turn; tokens per task; the run's timeline).

Nothing here knows about runs: the blocks hold text and the plots take plain numbers.
``Figure`` is used without pyplot: no global state, no GUI backend, safe in threads.
matplotlib is imported lazily; without it the caller gets a ``ConfigError`` saying so.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from execloop.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Block",
    "Bullets",
    "Heading",
    "Plot",
    "Span",
    "Table",
    "timeline_png",
    "to_html",
    "to_markdown",
    "tokens_png",
    "turns_png",
]

# Beyond this spread between the largest and smallest bar, a linear axis flattens the small ones.
LOG_SCALE_SPREAD = 30.0
CRITICAL_COLOR = "#c0392b"
OTHER_COLOR = "#7f8c9d"
SERIES_COLORS = ("#2e86c1", "#e67e22", "#27ae60", "#8e44ad")
MAX_LABEL_CHARS = 18


# A report is a list of blocks; a str is a paragraph, which may hold **bold** and nothing else.
@dataclasses.dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclasses.dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclasses.dataclass(frozen=True)
class Plot:
    """Embedded in the HTML; the Markdown links ``file`` (written beside it) when it is set."""

    alt: str
    png: bytes
    file: str = ""


Block = Heading | Table | Bullets | Plot | str


class Span(BaseModel):
    """One bar of the timeline: seconds since the run started."""

    model_config = ConfigDict(frozen=True)

    label: str
    start_s: float
    end_s: float
    critical: bool = False


def tokens_png(
    labels: Sequence[str], series: Mapping[str, Sequence[int]], *, title: str, ylabel: str
) -> bytes:
    """Grouped bars, one group per label and one bar per series; log scale when spread out."""
    figure = _figure(width=min(max(7.0, 1.5 + 1.1 * len(labels)), 16.0), height=4.5)
    axes = figure.add_subplot()
    width = 0.8 / max(len(series), 1)
    for number, (name, values) in enumerate(series.items()):
        offsets = [i + (number - (len(series) - 1) / 2) * width for i in range(len(labels))]
        color = SERIES_COLORS[number % len(SERIES_COLORS)]
        axes.bar(offsets, values, width=width, label=name, color=color)
    positive = [v for values in series.values() for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_SPREAD:
        axes.set_yscale("log")
        ylabel += " (log scale)"
    short = [_short(label) for label in labels]
    slanted = len(labels) > 6 or max(map(len, short), default=0) > 10  # else they overlap
    axes.set_xticks(
        range(len(labels)),
        short,
        rotation=30 if slanted else 0,
        ha="right" if slanted else "center",
    )
    axes.set_title(title, fontsize=10, wrap=True)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)


def turns_png(series: Mapping[str, Sequence[int]], *, title: str) -> bytes:
    """One line per series: the running total of input tokens after each model turn. A series
    that ended sooner stays flat (dashed) to the end: it read nothing more."""
    figure = _figure(width=8.0, height=4.5)
    axes = figure.add_subplot()
    totals = {name: list(itertools.accumulate(per_turn)) for name, per_turn in series.items()}
    longest = max(map(len, totals.values()), default=1)
    for number, (name, values) in enumerate(totals.items()):
        color = SERIES_COLORS[number % len(SERIES_COLORS)]
        turns = range(1, len(values) + 1)
        axes.plot(turns, values, marker="o", markersize=3, label=name, color=color)
        if values and len(values) < longest:
            axes.plot([len(values), longest], [values[-1]] * 2, linestyle="--", color=color)
        if values:
            axes.annotate(
                f"{values[-1]:,}",
                (longest, values[-1]),
                fontsize=8,
                color=color,
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
            )
    axes.set_xlim(0.5, longest * 1.12 + 0.5)  # room for the totals written at the right
    axes.set_xlabel("model turn (request)")
    axes.set_ylabel("input tokens so far")
    axes.set_title(title, fontsize=10, wrap=True)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    return _png(figure)


def timeline_png(spans: Sequence[Span], *, title: str) -> bytes:
    """A Gantt chart, first-started at the top, the critical path in its own colour."""
    ordered = sorted(spans, key=lambda span: (span.start_s, span.end_s))
    figure = _figure(width=8.0, height=min(1.5 + 0.35 * len(ordered), 20.0))
    axes = figure.add_subplot()
    for row, span in enumerate(ordered):
        color = CRITICAL_COLOR if span.critical else OTHER_COLOR
        axes.barh(row, span.end_s - span.start_s, left=span.start_s, color=color, height=0.6)
    axes.set_yticks(range(len(ordered)), [_short(span.label) for span in ordered])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the run started")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    axes.legend(
        handles=[
            Patch(color=CRITICAL_COLOR, label="critical path"),
            Patch(color=OTHER_COLOR, label="other tasks"),
        ],
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),  # beside the axes: never over a bar
    )
    return _png(figure)


def to_markdown(blocks: list[Block]) -> str:
    def cells(items: list[str]) -> str:
        return "| " + " | ".join(item.replace("|", "\\|") for item in items) + " |"

    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines.append("#" * block.level + " " + block.text)
        elif isinstance(block, Table):
            lines += [cells(block.headers), "|" + "---|" * len(block.headers)]
            lines += [cells(row) for row in block.rows]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items]
        elif isinstance(block, Plot):
            shown = f"![{block.alt}]({block.file})"
            lines.append(shown if block.file else f"Plot in report.html: {block.alt}.")
        else:
            lines.append(block)
        lines.append("")
    return "\n".join(lines)


def to_html(run_id: str, blocks: list[Block]) -> str:
    def inline(text: str) -> str:
        parts = html.escape(text).split("**")
        return "".join(f"<b>{part}</b>" if i % 2 else part for i, part in enumerate(parts))

    def row(items: list[str], tag: str) -> str:
        return "<tr>" + "".join(f"<{tag}>{inline(item)}</{tag}>" for item in items) + "</tr>"

    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{inline(block.text)}</h{block.level}>")
        elif isinstance(block, Table):
            rows = "".join(row(items, "td") for items in block.rows)
            body.append(f"<table>{row(block.headers, 'th')}{rows}</table>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Plot):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">')
        else:
            body.append(f"<p>{inline(block)}</p>")
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:100%}"
    )
    title = html.escape(f"execloop run {run_id}")
    head = f"<meta charset='utf-8'><title>{title}</title><style>{style}</style>"
    return (
        f"<!doctype html>\n<html><head>{head}</head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _figure(*, width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(
            "the report's plots need matplotlib: pip install matplotlib (or execloop[dev])"
        ) from exc
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
