"""Everything a broker does, persisted in SQLite (WAL) as it happens, so a crash loses nothing.

One row per task, per attempt, per tool call and per result. ``results.task_id`` is the
primary key and a result is only inserted by the task's current owner: a task can never end
with two results, whatever restarts or races happen. Each unfinished task names its owner
(a broker, see ``execloop.runtime.ownership``) and the time its lease expires; ``claim`` takes
an orphaned task over with a compare-and-swap on both.

A store opened with ``read_only=True`` (``execloop runs``/``report``) never creates, migrates
or writes anything: it opens the file with SQLite's ``mode=ro``, and where even that needs
write access (a WAL database in a read-only directory) as ``immutable=1``. Every sqlite3 error
is mapped to a ``StoreError`` here, in ``_store_error``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from execloop.errors import StoreError
from execloop.runtime.task import AttemptRecord, Result, Task

__all__ = ["SCHEMA_VERSION", "TaskRow", "TaskStore"]

SCHEMA_VERSION = 2  # 1: no task owners (PRAGMA user_version 0); 2: owner + lease_until
BUSY_TIMEOUT_S = 10
_TABLES = ("runs", "tasks", "attempts", "tool_calls", "results")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs ("
    " id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, meta TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id TEXT PRIMARY KEY, run_id TEXT NOT NULL, spec TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),"
    " submitted_at REAL NOT NULL, started_at REAL, finished_at REAL, launches INTEGER NOT NULL,"
    " owner TEXT, lease_until REAL)",
    "CREATE TABLE IF NOT EXISTS attempts ("
    " task_id TEXT NOT NULL, launch INTEGER NOT NULL, number INTEGER NOT NULL,"
    " record TEXT NOT NULL, PRIMARY KEY (task_id, launch, number))",
    "CREATE TABLE IF NOT EXISTS tool_calls ("
    " task_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,"
    " PRIMARY KEY (task_id, seq))",
    "CREATE TABLE IF NOT EXISTS results ("
    " task_id TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS tasks_by_run ON tasks (run_id, state)",
)
# columns added since schema 1, added to an older database when a broker opens it
_ADDED_COLUMNS = (("owner", "TEXT"), ("lease_until", "REAL"))
_HOW_TO_FIND = "a demo writes OUT/execloop.db; a broker writes the `db` it was given"


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
        fields: dict[str, Any] = {name: None for name, _ in _ADDED_COLUMNS}
        fields.update((name, row[name]) for name in keys if name in cls.__dataclass_fields__)
        return cls(**fields)

    @property
    def task(self) -> Task:
        """The task parsed from its spec (raises pydantic's ValidationError if it no longer
        validates, e.g. an input file was deleted since)."""
        return Task.model_validate_json(self.spec)


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """The one mapping of sqlite3's errors to execloop's."""
    code = getattr(exc, "sqlite_errorcode", sqlite3.SQLITE_ERROR) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreError(
            f"{path} is not an execloop database (not SQLite, or corrupt: {exc})",
            path=path,
            reason="corrupt",
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return StoreError(
            f"{path} is read-only ({exc}): a broker needs a writable database and directory; "
            "read an archived one with `execloop runs --db`",
            path=path,
            reason="read_only",
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreError(
            f"{path} stayed locked by another process for {BUSY_TIMEOUT_S} s ({exc}); "
            "retry when it is less busy",
            path=path,
            reason="busy",
        )
    if code == sqlite3.SQLITE_CANTOPEN:
        return StoreError(
            f"cannot open {path} ({exc}): check that it and its directory can be read "
            "(and written, for a broker)",
            path=path,
            reason="unusable",
        )
    return StoreError(f"database {path}: {exc}", path=path, reason="unusable")


def _check_is_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(
            f"cannot read {path}: {exc.strerror}", path=path, reason="unusable"
        ) from exc
    if not stat.S_ISREG(mode):  # a FIFO would block the open; a directory is not a database
        raise StoreError(
            f"{path} is not a regular file, so it is not an execloop database; {_HOW_TO_FIND}",
            path=path,
            reason="not_a_file",
        )


class TaskStore:
    """A thread-safe handle on one SQLite database (short transactions, WAL)."""

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        _check_is_file(self.path)
        if read_only:
            self._db = self._open_read_only()
        else:
            self._db = self._open_writable()

    def _open_writable(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory {self.path.parent} of {self.path}: {exc.strerror}",
                path=self.path,
                reason="unusable",
            ) from exc
        # Refused before SQLite leaves -wal/-shm files behind that its owner could not write.
        file_locked = self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK)
        if file_locked or not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"{self.path} is read-only here (a broker writes the file and, for its "
                f"write-ahead log, its directory {self.path.parent}); list or report it with "
                "`execloop runs --db`, or use another database",
                path=self.path,
                reason="read_only",
            )
        with self._mapped():
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
                self._check_schema(db)  # before anything is written into someone else's file
                db.execute("PRAGMA journal_mode=WAL")  # pragmas cannot run in a transaction
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a kill -9
                self._create_or_migrate(db)
            except BaseException:
                db.close()
                raise
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise StoreError(
                f"no database at {self.path}: check the path ({_HOW_TO_FIND})",
                path=self.path,
                reason="missing",
            )
        if not os.access(self.path, os.R_OK):
            raise StoreError(
                f"cannot read {self.path}: permission denied", path=self.path, reason="unusable"
            )
        quoted = urllib.parse.quote(str(self.path.absolute()))
        wal = self.path.with_name(self.path.name + "-wal")
        if not wal.exists():  # no writer has it open and nothing is unmerged: read the file
            return self._connect_checked(f"file:{quoted}?immutable=1")  # creating nothing
        try:
            return self._connect_checked(f"file:{quoted}?mode=ro")
        except StoreError as exc:
            if exc.reason not in ("read_only", "unusable"):
                raise
        # A WAL database whose directory cannot be written: SQLite cannot make its -shm file
        # even to read. As immutable it reads the main file only, which misses a -wal's data.
        if wal.stat().st_size > 0:
            raise StoreError(
                f"{self.path} has unmerged changes in {wal.name} and its directory is not "
                f"writable, so they cannot be read: copy {self.path.name} and {wal.name} to a "
                "writable directory and read the copy",
                path=self.path,
                reason="read_only",
            )
        return self._connect_checked(f"file:{quoted}?immutable=1")

    def _connect_checked(self, uri: str) -> sqlite3.Connection:
        with self._mapped():
            db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
                tables = self._check_schema(db)
            except BaseException:
                db.close()
                raise
        if not tables:
            db.close()
            raise StoreError(
                f"{self.path} is an empty database, not an execloop one; {_HOW_TO_FIND}",
                path=self.path,
                reason="foreign",
            )
        return db

    def _check_schema(self, db: sqlite3.Connection) -> set[str]:
        """The execloop tables present; raises if the file is someone else's or newer."""
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        ).fetchall()
        tables = {row[0] for row in rows}
        ours = tables <= set(_TABLES) and not self.read_only  # maybe a creation cut short
        if tables and not ours and not {"runs", "tasks", "results"} <= tables:
            raise StoreError(
                f"{self.path} is an SQLite database but not an execloop one (it has no runs, "
                f"tasks and results tables); {_HOW_TO_FIND}",
                path=self.path,
                reason="foreign",
            )
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer execloop (schema {version}, this one "
                f"reads up to {SCHEMA_VERSION}); upgrade execloop to use it",
                path=self.path,
                reason="newer",
            )
        return tables & set(_TABLES)

    @staticmethod
    def _create_or_migrate(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")  # two brokers opening an old database migrate it once
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(tasks)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in columns:
                    db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._mapped():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock, self._mapped():
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

    def release(self, task_id: str, *, owner: str) -> None:
        """Give an unfinished task up, so any broker may resume it at once."""
        with self._tx() as db:
            db.execute(
                "UPDATE tasks SET owner = NULL, lease_until = NULL, state = 'queued' "
                "WHERE id = ? AND owner = ? AND state != 'done'",
                (task_id, owner),
            )

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

    # -- results ---------------------------------------------------------------------------
    def put_result(self, result: Result, *, owner: str) -> bool:
        """Store the task's one result if ``owner`` owns the task; False (and nothing
        written) if it already has a result or belongs to another broker now."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO results (task_id, result, created_at) SELECT ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ? AND owner = ?)",
                (result.task_id, result.model_dump_json(), time.time(), result.task_id, owner),
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
        return Result.model_validate_json(rows[0]["result"]) if rows else None

    def result_counts(self) -> dict[str, int]:
        """Results per task id (every value is 1: the primary key guarantees it)."""
        rows = self._query("SELECT task_id, COUNT(*) AS n FROM results GROUP BY task_id")
        return {r["task_id"]: int(r["n"]) for r in rows}
