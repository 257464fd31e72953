"""The report's time side: Critical Steps per stage, the critical path by the clock, serial
versus wall time, and the run's timeline."""

from __future__ import annotations

from collections.abc import Sequence

from execloop.runtime.report_model import RunSummary, TaskSummary
from execloop.runtime.report_plots import Block, Heading, Plot, Span, Table, timeline_png

__all__ = ["critical_path", "critical_steps", "steps_blocks", "time_blocks"]

TIMELINE_PNG = "report-timeline.png"


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


def steps_blocks(run: RunSummary) -> list[Block]:
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


def time_blocks(run: RunSummary) -> list[Block]:
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
            "Timeline: tasks over time, critical path highlighted",
            timeline_png(spans, title=title),
            TIMELINE_PNG,
        ),
    ]
