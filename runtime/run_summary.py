"""A broker run as its report sees it, read from the runs database: each finished task with its
goal, checks, model, backend and token figures, and each task still without a result."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from execloop.runtime.report_model import (
    MODEL_API,
    RunSummary,
    StageSummary,
    TaskSummary,
    UnfinishedTask,
)
from execloop.runtime.store import TaskRow, TaskStore

__all__ = ["summarize_run"]


def _spec(row: TaskRow) -> dict[str, Any]:
    """The stored spec as plain JSON: it is read, not re-validated (an input file may be gone)."""
    try:
        spec = json.loads(row.spec)
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def summarize_run(store: TaskStore, run_id: str, *, include: Sequence[str] = ()) -> RunSummary:
    """The report's view of a run, built from the store; ``include`` adds tasks of earlier
    runs that this run finished (``Broker.resumed``)."""
    rows = store.tasks(run_id)
    seen = {row.id for row in rows}
    rows += [row for row in map(store.task, include) if row is not None and row.id not in seen]
    tasks, unfinished = [], []
    for row in rows:
        spec = _spec(row)
        goal = str(spec.get("goal", ""))
        result = store.result(row.id)
        if result is None or row.started_at is None or row.finished_at is None:
            unfinished.append(UnfinishedTask(task_id=row.id, goal=goal, state=row.state))
            continue
        sandbox = spec.get("sandbox")
        tasks.append(
            TaskSummary(
                task_id=row.id,
                status=result.status,
                error_kind=result.error_kind,
                attempts=result.attempts,
                usage=result.usage,
                # a scripted model's usage is counted by the project's tokenizer
                usage_counted_by=result.tokenizer if result.scripted else MODEL_API,
                classic=result.usage_classic_estimate,
                started_at=datetime.fromtimestamp(row.started_at, UTC),
                ended_at=datetime.fromtimestamp(row.finished_at, UTC),
                scripted=result.scripted,
                goal=goal,
                checks=result.checks,
                model=result.model,
                backend=str(sandbox.get("backend", "")) if isinstance(sandbox, dict) else "",
                attempt_input_tokens=tuple(a.usage.total_input_tokens for a in result.attempt_log),
            )
        )
    run = next((r for r in store.runs() if r["id"] == run_id), None)
    meta = json.loads(run["meta"]) if run is not None else {}
    return RunSummary(
        run_id=run_id,
        tasks=tasks,
        stages=[StageSummary(name="main", orchestration_steps=1)],
        unfinished=unfinished,
        started_at=None if run is None else datetime.fromtimestamp(run["started_at"], UTC),
        model=str(meta.get("model", "")) if isinstance(meta, dict) else "",
    )
