"""The task store on real SQLite: ownership (claim compare-and-swap, results only from the
owner), migration of an old database, and clear errors for databases that cannot be used."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from execloop.errors import ConfigError, StoreError
from execloop.runtime.store import PROGRESS_HISTORY, PROGRESS_LATEST, TaskStore
from execloop.runtime.store_db import SCHEMA_VERSION
from execloop.runtime.task import ErrorKind, Result, Task, TaskStatus
from execloop.sandboxes.progress import ProgressEvent

DEAD = "elsewhere:1:1:dead"  # an owner judged gone by the caller; the store does not judge
LIVE = "here:2:2:live"
TASK = Task(id="t-1", goal="write result.json")


def _passed(task_id: str = "t-1") -> Result:
    return Result(task_id=task_id, status=TaskStatus.PASSED)


def test_a_task_is_added_with_its_owner_and_lease(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "runs.db")
    before = time.time()
    assert store.add_task(TASK, "run-a", owner=LIVE, lease_s=30)
    assert not store.add_task(TASK, "run-b", owner=DEAD, lease_s=30)  # the first one stays
    row = store.task("t-1")
    assert row is not None and (row.owner, row.run_id, row.state) == (LIVE, "run-a", "queued")
    assert row.lease_until is not None and before + 30 <= row.lease_until <= time.time() + 30
    assert row.task == TASK


def test_claim_is_a_compare_and_swap_on_owner_and_lease(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "runs.db")
    store.add_task(TASK, "run-a", owner=DEAD, lease_s=30)
    row = store.task("t-1")
    assert row is not None
    seen = {"seen_owner": row.owner, "seen_lease_until": row.lease_until, "lease_s": 30.0}
    store.renew(owner=DEAD, lease_s=60)  # the owner was alive after all: its lease moved
    assert not store.claim("t-1", owner="b", **seen)  # type: ignore[arg-type]
    row = store.task("t-1")
    assert row is not None and row.owner == DEAD
    seen = {"seen_owner": row.owner, "seen_lease_until": row.lease_until, "lease_s": 30.0}
    assert store.claim("t-1", owner="b", **seen)  # type: ignore[arg-type]
    assert not store.claim("t-1", owner="c", **seen)  # the same view of the row: too late
    row = store.task("t-1")
    assert row is not None and row.owner == "b"


def test_released_and_finished_tasks(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "runs.db")
    store.add_task(TASK, "run-a", owner=LIVE, lease_s=30)
    store.add_task(Task(id="t-2", goal="g"), "run-a", owner=LIVE, lease_s=30)
    store.put_result(_passed("t-2"), owner=LIVE)
    assert store.release(owner="not-the-owner") == 0
    assert store.task("t-1").owner == LIVE  # type: ignore[union-attr]
    assert store.release(owner=LIVE) == 1  # only the unfinished one
    assert store.task("t-2").owner == LIVE  # type: ignore[union-attr]
    row = store.task("t-1")
    assert row is not None and (row.owner, row.lease_until) == (None, None)
    assert store.claim(
        "t-1", owner="b", seen_owner=None, seen_lease_until=None, lease_s=30
    )  # an unowned task is claimed from "nobody"
    assert store.put_result(_passed(), owner="b")
    assert store.unfinished() == []
    assert not store.claim("t-1", owner="c", seen_owner="b", seen_lease_until=None, lease_s=30)


def test_only_the_owner_stores_the_one_result(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "runs.db")
    store.add_task(TASK, "run-a", owner=LIVE, lease_s=30)
    failed = Result(
        task_id="t-1",
        status=TaskStatus.ERROR,
        error="internal: 't-1'",
        error_kind=ErrorKind.INTERNAL,
    )
    assert not store.put_result(failed, owner=DEAD)  # another broker's crash cannot poison it
    assert store.mark_running("t-1", owner=DEAD) is None
    assert store.mark_running("t-1", owner=LIVE) == 1
    assert store.put_result(_passed(), owner=LIVE)
    assert not store.put_result(failed, owner=LIVE)  # one result per task
    assert store.result("t-1") == _passed() and store.result_counts() == {"t-1": 1}
    row = store.task("t-1")
    assert row is not None and row.state == "done" and row.finished_at is not None


_CLAIMER = """
import sys, time
from pathlib import Path
from execloop.runtime.store import PROGRESS_HISTORY, PROGRESS_LATEST, TaskStore
store = TaskStore(sys.argv[1])
row = store.task("t-1")  # every claimer sees the dead owner, then all claim at once
Path(sys.argv[2] + "." + sys.argv[3]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
won = store.claim("t-1", owner=sys.argv[3], seen_owner=row.owner,
                  seen_lease_until=row.lease_until, lease_s=30)
print(int(won))
"""


def test_brokers_restarting_at_once_claim_an_orphan_exactly_once(tmp_path: Path) -> None:
    db, go = tmp_path / "runs.db", tmp_path / "go"
    TaskStore(db).add_task(TASK, "run-a", owner=DEAD, lease_s=0.001)
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(db), str(go), f"claimer-{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < len(claimers) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    wins = [int(claimer.communicate(timeout=60)[0]) for claimer in claimers]
    assert sorted(wins) == [0, 0, 0, 0, 0, 1]
    row = TaskStore(db).task("t-1")
    assert row is not None and row.owner == f"claimer-{wins.index(1)}"


_OLD_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL, meta TEXT NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
    submitted_at REAL NOT NULL, started_at REAL, finished_at REAL, launches INTEGER NOT NULL
);
CREATE TABLE attempts (
    task_id TEXT NOT NULL, launch INTEGER NOT NULL, number INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (task_id, launch, number)
);
CREATE TABLE tool_calls (
    task_id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (task_id, seq)
);
CREATE TABLE results (task_id TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX tasks_by_run ON tasks (run_id, state);
"""


def _old_database(path: Path) -> None:
    """A database as execloop wrote it before tasks had owners: one task done, one not."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(_OLD_SCHEMA)
    db.execute("INSERT INTO runs VALUES ('old-run', 1.0, NULL, '{}')")
    for task_id, state in (("done-1", "done"), ("open-1", "running")):
        spec = Task(id=task_id, goal="g").model_dump_json()
        db.execute(
            "INSERT INTO tasks VALUES (?, 'old-run', ?, ?, 1.0, 2.0, NULL, 1)",
            (task_id, spec, state),
        )
    db.execute(
        "INSERT INTO results VALUES ('done-1', ?, 3.0)", (_passed("done-1").model_dump_json(),)
    )
    db.close()


def test_an_old_database_is_migrated_and_its_unfinished_task_is_claimable(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path)
    reader = TaskStore(path, read_only=True)  # reading never migrates
    assert [row.owner for row in reader.tasks()] == [None, None]
    assert reader.progress("open-1") == []  # no progress table yet: none kept
    reader.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (0,)
    store = TaskStore(path)
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(tasks)")}
    assert {"owner", "lease_until"} <= columns
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert store.result("done-1") == _passed("done-1")
    (row,) = store.unfinished()
    assert (row.id, row.owner, row.launches) == ("open-1", None, 1)
    assert store.claim("open-1", owner="b", seen_owner=None, seen_lease_until=None, lease_s=9)
    assert store.mark_running("open-1", owner="b") == 2
    TaskStore(path)  # a second open finds it migrated and changes nothing


def test_a_missing_database_is_never_created_for_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no database at .*typo\.db: check the path") as caught:
        TaskStore(tmp_path / "typo.db", read_only=True)
    assert caught.value.reason == "missing" and isinstance(caught.value, ConfigError)
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    ("content", "reason", "message"),
    [
        (b"hello, this is a text file\n" * 200, "corrupt", "is not an execloop database"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "corrupt", "is not an execloop database"),
        (None, "foreign", "is an SQLite database but not an execloop one"),
        (b"", "foreign", "is an empty database, not an execloop one"),
    ],
)
def test_a_database_that_is_not_ours_is_refused_with_its_reason(
    tmp_path: Path, content: bytes | None, reason: str, message: str
) -> None:
    path = tmp_path / "x.db"
    if content is None:
        sqlite3.connect(path).execute("CREATE TABLE customers (name TEXT)").connection.commit()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    for read_only in (True, False):
        if read_only is False and reason == "foreign" and content == b"":
            continue  # an empty file is a fine new database for a broker
        with pytest.raises(StoreError, match=message) as caught:
            TaskStore(path, read_only=read_only)
        assert caught.value.reason == reason and caught.value.path == path
    assert path.read_bytes() == before  # nothing written into someone else's file


def test_a_fifo_or_directory_is_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        for read_only in (True, False):
            with pytest.raises(StoreError, match="is not a regular file") as caught:
                TaskStore(path, read_only=read_only)
            assert caught.value.reason == "not_a_file"


def test_a_database_from_a_newer_execloop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    TaskStore(path).close()
    sqlite3.connect(path, isolation_level=None).execute(
        f"PRAGMA user_version = {SCHEMA_VERSION + 1}"
    )
    with pytest.raises(StoreError, match="written by a newer execloop") as caught:
        TaskStore(path)
    assert caught.value.reason == "newer"


def test_a_reader_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    TaskStore(path).start_run("r", {})
    reader = TaskStore(path, read_only=True)
    assert [run["id"] for run in reader.runs()] == ["r"]
    with pytest.raises(StoreError, match="is read-only") as caught:
        reader.start_run("s", {})
    assert caught.value.reason == "read_only"


def test_progress_keeps_the_latest_events_and_a_thinned_history(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "runs.db")
    for step in range(1, 1001):
        store.add_progress("t-1", 1, 1, ProgressEvent(step=step, total=1000, time=step))
    store.add_progress("t-1", 1, 2, ProgressEvent(step=7, time=0))
    kept = store.progress("t-1")
    first = [r.event.step for r in kept if r.attempt == 1]
    assert len(first) <= PROGRESS_LATEST + PROGRESS_HISTORY
    assert first[-PROGRESS_LATEST:] == list(range(1001 - PROGRESS_LATEST, 1001))
    history = first[:-PROGRESS_LATEST]
    assert history[0] == 1 and len(history) >= PROGRESS_HISTORY // 2
    assert history == sorted(history) and history[1] < 100  # spread over the whole run
    assert [(r.attempt, r.event.step) for r in kept if r.attempt == 2] == [(2, 7)]
    store.close()
