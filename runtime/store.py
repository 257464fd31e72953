"""Everything a broker does, persisted in SQLite (WAL) as it happens, so a crash loses nothing.

One row per task, per attempt, per tool call and per result, and a bounded record of the
progress each attempt's script reported (the latest events, and a thinned history).
``results.task_id`` is the primary key and a result is only inserted by the task's current
owner: a task can never end with two results, whatever restarts or races happen. Each
unfinished task names its owner (a broker, see ``execloop.runtime.ownership``) and the time
its lease expires; ``claim`` takes an orphaned task over with a compare-and-swap on both.
How the file is opened (schema, migration, read-only access, errors) is ``store_db``'s job.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from execloop.runtime.store_db import (
    ADDED_COLUMNS,
    mapped_errors,
    open_database,
    with_error_kind,
)
from execloop.runtime.task import AttemptRecord, Result, Task
from execloop.sandboxes.progress import ProgressEvent

__all__ = ["PROGRESS_HISTORY", "PROGRESS_LATEST", "ProgressRecord", "TaskRow", "TaskStore"]

# Progress kept per attempt: the latest events in full, and a history of older ones that is
# thinned whenever it grows past its size (only every 2nd, 4th, 8th... event is kept, the
# first always), so it stays spread over the whole run however long it is.
PROGRESS_LATEST = 50
PROGRESS_HISTORY = 50


class ProgressRecord(BaseModel):
    """A stored progress event and the attempt (of which launch) it came from."""

    model_config = ConfigDict(frozen=True)

    launch: int
    attempt: int
    event: ProgressEvent


@dataclass(frozen=True)
class TaskRow:
    """A task as stored: its spec, where it is, who owns it, and when it ran."""

    id: str
    run_id: str
    spec: str
    state: str
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    launches: int
    owner: str | None
    lease_until: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> TaskRow:
        keys = set(row.keys())  # a read-only schema-1 database has no owner columns
        fields: dict[str, Any] = {name: None for name, _ in ADDED_COLUMNS}
        fields.update((name, row[name]) for name in keys if name in cls.__dataclass_fields__)
        return cls(**fields)

    @property
    def task(self) -> Task:
        """The task parsed from its spec (raises pydantic's ValidationError if it no longer
        validates, e.g. an input file was deleted since)."""
        return Task.model_validate_json(self.spec)


class TaskStore:
    """A thread-safe handle on one SQLite database (short transactions, WAL). ``read_only``
    (for listing and reports) never creates, migrates or writes anything."""

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._db = open_database(self.path, read_only=read_only)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, mapped_errors(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock, mapped_errors(self.path):
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

    # -- tasks and who owns them -------------------------------------------------------------
    def add_task(self, task: Task, run_id: str, *, owner: str, lease_s: float) -> bool:
        """Record a submitted task, owned by ``owner``; False if the id already exists."""
        with self._tx() as db:
            now = time.time()
            cursor = db.execute(
                "INSERT OR IGNORE INTO tasks (id, run_id, spec, state, submitted_at, launches, "
                "owner, lease_until) VALUES (?, ?, ?, 'queued', ?, 0, ?, ?)",
                (task.id, run_id, task.model_dump_json(), now, owner, now + lease_s),
            )
            return cursor.rowcount == 1

    def claim(
        self,
        task_id: str,
        *,
        owner: str,
        seen_owner: str | None,
        seen_lease_until: float | None,
        lease_s: float,
    ) -> bool:
        """Take an unfinished task over from ``seen_owner`` (judged gone by the caller).

        A compare-and-swap: it succeeds only if owner and lease are still exactly as seen, so
        of several brokers claiming the same orphan one wins, and an owner that renewed its
        lease in the meantime keeps its task.
        """
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tasks SET owner = ?, lease_until = ?, state = 'queued' "
                "WHERE id = ? AND state != 'done' AND owner IS ? AND lease_until IS ? "
                "AND NOT EXISTS (SELECT 1 FROM results WHERE task_id = ?)",
                (owner, time.time() + lease_s, task_id, seen_owner, seen_lease_until, task_id),
            )
            return cursor.rowcount == 1

    def release(self, *, owner: str) -> int:
        """Give up the owner's unfinished tasks (a broker stopping), so that any broker may
        resume them at once; returns how many there were."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tasks SET owner = NULL, lease_until = NULL, state = 'queued' "
                "WHERE owner = ? AND state != 'done'",
                (owner,),
            )
            return cursor.rowcount

    def renew(self, *, owner: str, lease_s: float) -> int:
        """Extend the leases of the owner's unfinished tasks; returns how many it holds."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tasks SET lease_until = ? WHERE owner = ? AND state != 'done'",
                (time.time() + lease_s, owner),
            )
            return cursor.rowcount

    def mark_running(self, task_id: str, *, owner: str) -> int | None:
        """Mark a launch of the task; its launch number (1 unless resumed), or None if
        ``owner`` no longer owns it."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE tasks SET state = 'running', started_at = ?, launches = launches + 1 "
                "WHERE id = ? AND owner = ? AND state != 'done'",
                (time.time(), task_id, owner),
            )
            if cursor.rowcount != 1:
                return None
            row = db.execute("SELECT launches FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return int(row["launches"])

    def task(self, task_id: str) -> TaskRow | None:
        rows = self._query("SELECT * FROM tasks WHERE id = ?", task_id)
        return TaskRow.from_row(rows[0]) if rows else None

    def tasks(self, run_id: str | None = None) -> list[TaskRow]:
        if run_id is None:
            rows = self._query("SELECT * FROM tasks ORDER BY submitted_at")
        else:
            rows = self._query("SELECT * FROM tasks WHERE run_id = ? ORDER BY submitted_at", run_id)
        return [TaskRow.from_row(r) for r in rows]

    def unfinished(self) -> list[TaskRow]:
        """Tasks submitted but without a result: what a broker may resume if their owner is
        gone."""
        rows = self._query(
            "SELECT * FROM tasks WHERE state != 'done' "
            "AND id NOT IN (SELECT task_id FROM results) ORDER BY submitted_at"
        )
        return [TaskRow.from_row(r) for r in rows]

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

    def add_progress(self, task_id: str, launch: int, attempt: int, event: ProgressEvent) -> None:
        """Keep one progress event of an attempt (bounded: see ``PROGRESS_LATEST``)."""
        key = (task_id, launch, attempt)
        where = "task_id = ? AND launch = ? AND attempt = ?"
        with self._tx() as db:
            seq = db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM progress WHERE {where}", key)
            db.execute(
                "INSERT INTO progress (task_id, launch, attempt, seq, event) "
                "VALUES (?, ?, ?, ?, ?)",
                (*key, seq.fetchone()[0] + 1, event.model_dump_json()),
            )
            older = [
                row[0]
                for row in db.execute(
                    f"SELECT seq FROM progress WHERE {where} ORDER BY seq DESC LIMIT -1 OFFSET ?",
                    (*key, PROGRESS_LATEST),
                )
            ]
            if len(older) > PROGRESS_HISTORY:  # keep every stride-th, first included
                stride = 2
                while sum((seq - 1) % stride == 0 for seq in older) > PROGRESS_HISTORY:
                    stride *= 2
                db.executemany(
                    f"DELETE FROM progress WHERE {where} AND seq = ?",
                    [(*key, seq) for seq in older if (seq - 1) % stride],
                )

    def progress(self, task_id: str) -> list[ProgressRecord]:
        """The progress kept for a task, in order (none in a database older than schema 4)."""
        if not self._query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", "progress"
        ):
            return []
        rows = self._query(
            "SELECT launch, attempt, event FROM progress WHERE task_id = ? "
            "ORDER BY launch, attempt, seq",
            task_id,
        )
        return [
            ProgressRecord(
                launch=r["launch"],
                attempt=r["attempt"],
                event=ProgressEvent.model_validate_json(r["event"]),
            )
            for r in rows
        ]

    # -- results ---------------------------------------------------------------------------
    def put_result(self, result: Result, *, owner: str) -> bool:
        """Store the task's one result if ``owner`` owns the task; False (and nothing
        written) if it already has a result or belongs to another broker now."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO results (task_id, result, created_at, error_kind) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ? AND owner = ?)",
                (
                    result.task_id,
                    result.model_dump_json(),
                    time.time(),
                    result.error_kind,
                    result.task_id,
                    owner,
                ),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(
                "UPDATE tasks SET state = 'done', lease_until = NULL, "
                "finished_at = COALESCE(finished_at, ?) WHERE id = ?",
                (time.time(), result.task_id),
            )
            return True

    def result(self, task_id: str) -> Result | None:
        rows = self._query("SELECT result FROM results WHERE task_id = ?", task_id)
        # a reader may open an older database without migrating it: kinds are derived then
        return Result.model_validate_json(with_error_kind(rows[0]["result"])) if rows else None

    def result_counts(self) -> dict[str, int]:
        """Results per task id (every value is 1: the primary key guarantees it)."""
        rows = self._query("SELECT task_id, COUNT(*) AS n FROM results GROUP BY task_id")
        return {r["task_id"]: int(r["n"]) for r in rows}
