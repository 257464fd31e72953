"""Opening the runs database: its schema and migrations, read-only access, and the one place
where sqlite3's errors become execloop's (``StoreError``).

A broker opens it writable: the file and its directory must be writable (WAL keeps ``-wal`` and
``-shm`` files beside it), a file that is someone else's (not SQLite, corrupt, other tables,
a newer schema) is refused before anything is written into it, and an older schema is
migrated in one transaction. ``execloop runs``/``report`` open it read-only and never create,
migrate or write anything: as ``immutable=1`` when no ``-wal`` file exists (nothing unmerged,
no writer; SQLite then creates no files either), else with ``mode=ro``, falling back to
``immutable=1`` where even that needs write access and the ``-wal`` is empty.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from execloop.errors import StoreError
from execloop.runtime.task import ErrorKind

__all__ = [
    "ADDED_COLUMNS",
    "SCHEMA_VERSION",
    "mapped_errors",
    "open_database",
    "with_error_kind",
]

# 1: no task owners (PRAGMA user_version 0); 2: owner + lease_until; 3: results.error_kind;
# 4: progress (a reader does without it in older files)
SCHEMA_VERSION = 4
BUSY_TIMEOUT_S = 10
_TABLES = ("runs", "tasks", "attempts", "tool_calls", "results", "progress")
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
    " task_id TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL, error_kind TEXT)",
    "CREATE TABLE IF NOT EXISTS progress ("
    " task_id TEXT NOT NULL, launch INTEGER NOT NULL, attempt INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, event TEXT NOT NULL, PRIMARY KEY (task_id, launch, attempt, seq))",
    "CREATE INDEX IF NOT EXISTS tasks_by_run ON tasks (run_id, state)",
)
# columns added since schema 1: a broker adds them to an older database; a reader does without
ADDED_COLUMNS = (("owner", "TEXT"), ("lease_until", "REAL"))
# What results stored before ``error_kind`` existed say, by the prefix of their ``error``
# (``TypeName: message``, ``internal: ...``, ``cancelled``): read only to give them the field.
_LEGACY_KINDS = {
    "cancelled": ErrorKind.CANCELLED,
    "internal": ErrorKind.INTERNAL,
    "ModelError": ErrorKind.MODEL,
    **dict.fromkeys(("ConfigError", "SkillError", "StoreError"), ErrorKind.INVALID_TASK),
    **dict.fromkeys(
        (
            "SandboxError",
            "SandboxStartError",
            "SandboxClosedError",
            "ProtocolError",
            "TransferError",
            "BackendUnavailableError",
            "ImageError",
        ),
        ErrorKind.SANDBOX,
    ),
}
_HOW_TO_FIND = "a demo writes OUT/execloop.db; a broker writes the `db` it was given"


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


def with_error_kind(raw: str) -> str:
    """A stored result's JSON with its ``error_kind``: results of schema 2 and older have none,
    so it is derived, once, from their status and error text."""
    if '"error_kind":' in raw:  # only a key is followed by a colon: a current result
        return raw
    data = json.loads(raw)
    if not isinstance(data, dict) or "error_kind" in data:
        return raw
    kind: ErrorKind | None = None
    if data.get("status") == "budget_exhausted":
        kind = ErrorKind.BUDGET
    elif data.get("status") == "error":
        prefix = str(data.get("error") or "").partition(":")[0].strip()
        kind = _LEGACY_KINDS.get(prefix, ErrorKind.INTERNAL)
        data["error"] = data.get("error") or "unknown error (stored by an older execloop)"
    return json.dumps({**data, "error_kind": kind})


@contextmanager
def mapped_errors(path: Path) -> Iterator[None]:
    """Raise sqlite3's errors inside as ``StoreError``s about ``path``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise _store_error(path, exc) from exc


def open_database(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection (autocommit, rows by name, usable from any thread; callers serialise)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}"
        raise StoreError(message, path=path, reason="unusable") from exc
    if mode is not None and not stat.S_ISREG(mode):  # a FIFO would block the open
        raise StoreError(
            f"{path} is not a regular file, so it is not an execloop database; {_HOW_TO_FIND}",
            path=path,
            reason="not_a_file",
        )
    return _open_read_only(path) if read_only else _open_writable(path)


def _open_writable(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory {path.parent} of {path}: {exc.strerror}",
            path=path,
            reason="unusable",
        ) from exc
    # Refused before SQLite leaves -wal/-shm files behind that the file's owner cannot write.
    file_locked = path.exists() and not os.access(path, os.R_OK | os.W_OK)
    if file_locked or not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"{path} is read-only here (a broker writes the file and, for its write-ahead "
            f"log, its directory {path.parent}); list or report it with `execloop runs --db`, "
            "or use another database",
            path=path,
            reason="read_only",
        )
    with mapped_errors(path):
        db = _connect(str(path), uri=False)
        try:
            _check_schema(db, path, read_only=False)  # before anything is written into it
            db.execute("PRAGMA journal_mode=WAL")  # pragmas cannot run in a transaction
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a kill -9
            _create_or_migrate(db)
        except BaseException:
            db.close()
            raise
    return db


def _open_read_only(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError(
            f"no database at {path}: check the path ({_HOW_TO_FIND})", path=path, reason="missing"
        )
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read {path}: permission denied", path=path, reason="unusable")
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}"
    wal = path.with_name(path.name + "-wal")
    if not wal.exists():
        return _connect_checked(f"{uri}?immutable=1", path)
    try:
        return _connect_checked(f"{uri}?mode=ro", path)
    except StoreError as exc:
        if exc.reason not in ("read_only", "unusable"):
            raise
    # A WAL database whose directory cannot be written: SQLite cannot make its -shm file even
    # to read. As immutable it reads the main file only, which would miss the -wal's data.
    if wal.stat().st_size > 0:
        raise StoreError(
            f"{path} has unmerged changes in {wal.name} and its directory is not writable, so "
            f"they cannot be read: copy {path.name} and {wal.name} to a writable directory and "
            "read the copy",
            path=path,
            reason="read_only",
        )
    return _connect_checked(f"{uri}?immutable=1", path)


def _connect(target: str, *, uri: bool) -> sqlite3.Connection:
    db = sqlite3.connect(target, uri=uri, check_same_thread=False, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    return db


def _connect_checked(uri: str, path: Path) -> sqlite3.Connection:
    with mapped_errors(path):
        db = _connect(uri, uri=True)
        try:
            tables = _check_schema(db, path, read_only=True)
        except BaseException:
            db.close()
            raise
    if not tables:
        db.close()
        raise StoreError(
            f"{path} is an empty database, not an execloop one; {_HOW_TO_FIND}",
            path=path,
            reason="foreign",
        )
    return db


def _check_schema(db: sqlite3.Connection, path: Path, *, read_only: bool) -> set[str]:
    """The execloop tables present; raises if the file is someone else's or newer."""
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
    ).fetchall()
    tables = {row[0] for row in rows}
    ours = tables <= set(_TABLES) and not read_only  # maybe a creation cut short
    if tables and not ours and not {"runs", "tasks", "results"} <= tables:
        raise StoreError(
            f"{path} is an SQLite database but not an execloop one (it has no runs, tasks and "
            f"results tables); {_HOW_TO_FIND}",
            path=path,
            reason="foreign",
        )
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer execloop (schema {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade execloop to use it",
            path=path,
            reason="newer",
        )
    return tables & set(_TABLES)


def _create_or_migrate(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")  # two brokers opening an old database migrate it once
    try:
        for statement in _SCHEMA:
            db.execute(statement)
        columns = {row["name"] for row in db.execute("PRAGMA table_info(tasks)")}
        for name, kind in ADDED_COLUMNS:
            if name not in columns:
                db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")
        if "error_kind" not in {row["name"] for row in db.execute("PRAGMA table_info(results)")}:
            _add_error_kinds(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _add_error_kinds(db: sqlite3.Connection) -> None:
    """Schema 3: every result gets its ``error_kind``, in its JSON and in a column."""
    db.execute("ALTER TABLE results ADD COLUMN error_kind TEXT")
    for row in db.execute("SELECT task_id, result FROM results").fetchall():
        raw = with_error_kind(row["result"])
        kind = json.loads(raw).get("error_kind")
        db.execute(
            "UPDATE results SET result = ?, error_kind = ? WHERE task_id = ?",
            (raw, kind, row["task_id"]),
        )
