"""The results of ``execloop bench sandboxes`` as people read them: one markdown table (every
column defined under it), the same rows for the terminal, and a PNG of cold start and exec
latency side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "markdown", "plot", "rows"]

COLUMNS = (
    "contender",
    "isolation",
    "keeps state",
    "cold start p50 ms",
    "exec p50 ms",
    "exec p95 ms",
    "teardown p50 ms",
    "2 sessions execs/s",
    "idle MiB",
)
DEFINITIONS = """\
- **cold start**: from nothing to the first `print(1+1)` answered (the session's start
  and its first exec); **exec**: `print(1+1)` in an open, warm session; **teardown**: closing it.
- **keeps state**: measured: `x = 41` then `print(x + 1)` in the same session printed 42.
- **2 sessions execs/s**: two sessions of the contender each running execs at once, total rate.
- **idle MiB**: memory held by an open, idle session: its containers as `docker stats` counts
  it (usage less inactive file cache), or the unique memory of its process tree.
- Every contender ran in one run, round by round in rotating order, on the same image; every
  container with `--network none` except autogen's executor, which has no such option."""


def _ms(value: dict[str, float], key: str) -> str:
    return f"{value[key]:.1f}" if value[key] < 100 else f"{value[key]:.0f}"


def rows(result: dict[str, Any]) -> list[list[str]]:
    """One row of strings per contender, in ``COLUMNS`` order."""
    table = []
    for c in result["contenders"]:
        if c["status"] != "ok":
            table.append([c["name"], c["isolation"], f"unavailable: {c['reason']}"] + [""] * 6)
            continue
        rate, memory = c["two_session_execs_per_s"], c["idle_memory_mib"]
        table.append(
            [
                c["name"],
                c["isolation"],
                "yes" if c["keeps_state"] else "no",
                _ms(c["cold_start_ms"], "p50_ms"),
                _ms(c["exec_ms"], "p50_ms"),
                _ms(c["exec_ms"], "p95_ms"),
                _ms(c["teardown_ms"], "p50_ms"),
                "-" if rate is None else f"{rate:.0f}",
                "in-process" if memory is None else f"{memory:.0f}",
            ]
        )
    return table


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    host = result["machine"]
    lines = [
        f"`execloop bench sandboxes` on {result['date']}: {host['cores']} cores, Docker "
        f"{host['docker_version']}, image `{result['image']}`; {s['rounds']} measured rounds "
        f"(+{s['warmup_rounds']} warm-up) of {s['execs']} execs, {s['throughput_rounds']} "
        f"throughput rounds of {s['throughput_execs']} execs per session.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join(["---"] * 3 + ["---:"] * (len(COLUMNS) - 3)) + " |",
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows(result)
    ]
    notes = [f"- {c['name']}: {c['note']}." for c in result["contenders"] if c["note"]]
    return "\n".join([*lines, "", DEFINITIONS, *notes, ""])


def plot(result: dict[str, Any], path: Path) -> None:
    """Cold start and exec p50 (p95 whiskers), log scale, one bar per available contender.
    Needs matplotlib (the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ok = [c for c in result["contenders"] if c["status"] == "ok"]
    colors = {"execloop": "#4c72b0", "peer": "#dd8452", "reference": "#8c8c8c"}
    figure, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(ok) + 2.2), sharey=True)
    names = [c["name"] for c in ok][::-1]
    for ax, key, title in zip(
        axes, ("cold_start_ms", "exec_ms"), ("cold start", "exec in an open session"), strict=True
    ):
        p50 = [c[key]["p50_ms"] for c in ok][::-1]
        p95 = [c[key]["p95_ms"] for c in ok][::-1]
        whiskers = [[0.0] * len(p50), [top - mid for mid, top in zip(p50, p95, strict=True)]]
        bars = [colors[c["group"]] for c in ok][::-1]
        ax.barh(range(len(ok)), p50, xerr=whiskers, color=bars, capsize=3)
        for index, (middle, top) in enumerate(zip(p50, p95, strict=True)):  # p50 past p95
            label = f"{middle:.0f}" if middle >= 10 else f"{middle:.2g}"
            ax.text(top * 1.15, index, label, va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(right=max(p95) * 6)  # room for the labels
        ax.set_title(f"{title}: p50 ms (p95 whisker), log scale")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(range(len(ok)), names, fontsize=9)
    legend = [Patch(color=color, label=group) for group, color in colors.items()]
    axes[1].legend(handles=legend, loc="lower right", fontsize=8)
    figure.suptitle(f"execloop bench sandboxes, {result['date']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
