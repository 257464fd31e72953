"""Everything a broker does, persisted in SQLite (WAL) as it happens, so a crash loses nothing.

One row per task, per attempt, per tool call and per result. ``results.task_id`` is the
primary key and results are only ever inserted with ``INSERT OR IGNORE``: a task can never
end with two results, whatever restarts or races happen.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from execloop.runtime.task import AttemptRecord, Result, Task

__all__ = ["TaskRow", "TaskStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
    submitted_at REAL NOT NULL, started_at REAL, finished_at REAL, launches INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    task_id TEXT NOT NULL, launch INTEGER NOT NULL, number INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (task_id, launch, number)
);
CREATE TABLE IF NOT EXISTS tool_calls (
    task_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);
CREATE TABLE IF NOT EXISTS results (
    task_id TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_run ON tasks (run_id, state);
"""


class TaskRow:
    """A task as stored: its spec, where it is, and when it ran."""

    def __init__(self, row: sqlite3.Row) -> None:
        self.id: str = row["id"]
        self.run_id: str = row["run_id"]
        self.task = Task.model_validate_json(row["spec"])
        self.state: str = row["state"]
        self.submitted_at: float = row["submitted_at"]
        self.started_at: float | None = row["started_at"]
        self.finished_at: float | None = row["finished_at"]
        self.launches: int = row["launches"]


class TaskStore:
    """A thread-safe handle on one SQLite database (short transactions, WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:  # pragmas cannot run inside a transaction
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a kill -9
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # -- runs -------------------------------------------------------------------------------
    def start_run(self, run_id: str, meta: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, started_at, meta) VALUES (?, ?, ?)",
                (run_id, time.time(), json.dumps(meta)),
            )

    def finish_run(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time(), run_id))

    def runs(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._query("SELECT * FROM runs ORDER BY started_at")]

    # -- tasks -------------------------------------------------------------------------------
    def add_task(self, task: Task, run_id: str) -> bool:
        """Record a submitted task; False if a task with this id already exists."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO tasks (id, run_id, spec, state, submitted_at, launches) "
                "VALUES (?, ?, ?, 'queued', ?, 0)",
                (task.id, run_id, task.model_dump_json(), time.time()),
            )
            return cursor.rowcount == 1

    def mark_running(self, task_id: str) -> int:
        """Mark a launch of the task; returns its launch number (1 unless resumed)."""
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET state = 'running', started_at = ?, launches = launches + 1 "
                "WHERE id = ?",
                (time.time(), task_id),
            )
            row = db.execute("SELECT launches FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return int(row["launches"])

    def task(self, task_id: str) -> TaskRow | None:
        rows = self._query("SELECT * FROM tasks WHERE id = ?", task_id)
        return TaskRow(rows[0]) if rows else None

    def tasks(self, run_id: str | None = None) -> list[TaskRow]:
        if run_id is None:
            return [TaskRow(r) for r in self._query("SELECT * FROM tasks ORDER BY submitted_at")]
        rows = self._query("SELECT * FROM tasks WHERE run_id = ? ORDER BY submitted_at", run_id)
        return [TaskRow(r) for r in rows]

    def unfinished(self) -> list[TaskRow]:
        """Tasks submitted but without a result: what a restarted broker must resume."""
        rows = self._query(
            "SELECT * FROM tasks WHERE state != 'done' "
            "AND id NOT IN (SELECT task_id FROM results) ORDER BY submitted_at"
        )
        return [TaskRow(r) for r in rows]

    # -- what happens while a task runs ------------------------------------------------------
    def add_attempt(self, task_id: str, launch: int, record: AttemptRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO attempts (task_id, launch, number, record) "
                "VALUES (?, ?, ?, ?)",
                (task_id, launch, record.number, record.model_dump_json()),
            )

    def attempts(self, task_id: str) -> list[AttemptRecord]:
        rows = self._query(
            "SELECT record FROM attempts WHERE task_id = ? ORDER BY launch, number", task_id
        )
        return [AttemptRecord.model_validate_json(r["record"]) for r in rows]

    def add_tool_calls(self, task_id: str, records: list[dict[str, Any]]) -> None:
        with self._tx() as db:
            start = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM tool_calls WHERE task_id = ?", (task_id,)
            ).fetchone()[0]
            db.executemany(
                "INSERT INTO tool_calls (task_id, seq, record) VALUES (?, ?, ?)",
                [(task_id, start + i, json.dumps(r)) for i, r in enumerate(records, 1)],
            )

    def tool_calls(self, task_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT record FROM tool_calls WHERE task_id = ? ORDER BY seq", task_id)
        return [json.loads(r["record"]) for r in rows]

    # -- results ---------------------------------------------------------------------------
    def put_result(self, result: Result) -> bool:
        """Store the task's one result; False (and nothing written) if it already has one."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO results (task_id, result, created_at) VALUES (?, ?, ?)",
                (result.task_id, result.model_dump_json(), time.time()),
            )
            db.execute(
                "UPDATE tasks SET state = 'done', finished_at = COALESCE(finished_at, ?) "
                "WHERE id = ?",
                (time.time(), result.task_id),
            )
            return cursor.rowcount == 1

    def result(self, task_id: str) -> Result | None:
        rows = self._query("SELECT result FROM results WHERE task_id = ?", task_id)
        return Result.model_validate_json(rows[0]["result"]) if rows else None

    def result_counts(self) -> dict[str, int]:
        """Results per task id (every value is 1: the primary key guarantees it)."""
        rows = self._query("SELECT task_id, COUNT(*) AS n FROM results GROUP BY task_id")
        return {r["task_id"]: int(r["n"]) for r in rows}
