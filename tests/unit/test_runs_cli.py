"""`execloop runs`, `report` and `demo` on databases and directories that cannot be used as
asked: a clear one-line error, a non-zero exit, no traceback, nothing created or written.

Read-only cases run the CLI as an unprivileged user when the tests run as root (root ignores
file modes), so they test what an ordinary user sees.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from execloop.runtime.store import TaskStore
from execloop.runtime.task import Result, Task, TaskStatus

NOBODY = 65534
OWNER = "host:1:1:test"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory an unprivileged user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="store-cli-"))
    path.chmod(0o755)
    yield path
    for folder, dirs, _ in os.walk(path):
        for name in dirs:
            (Path(folder) / name).chmod(0o755)
    shutil.rmtree(path)


def _execloop(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if unprivileged and os.geteuid() == 0:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "execloop.runtime.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "COLUMNS": "1000"},  # one line on the terminal, not rich's 80
        cwd="/",
    )


def _one_line_error(done: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _run_with_a_result(path: Path, *, crash: bool = False) -> None:
    """A database with one finished run, closed cleanly (merged WAL) or left as a killed
    process leaves it (changes still in the -wal file)."""
    code = f"""
import os
from execloop.runtime.store import TaskStore
from execloop.runtime.task import Result, Task, TaskStatus
store = TaskStore({str(path)!r})
store.start_run("run-1", {{}})
store.add_task(Task(id="t-1", goal="g"), "run-1", owner={OWNER!r}, lease_s=30)
store.mark_running("t-1", owner={OWNER!r})
store.put_result(Result(task_id="t-1", status=TaskStatus.PASSED), owner={OWNER!r})
store.finish_run("run-1")
if {crash!r}:
    os._exit(0)
store.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _archive(folder: Path) -> None:
    for item in folder.iterdir():
        item.chmod(0o444)
    folder.chmod(0o555)


def test_runs_on_a_missing_database_says_so_and_creates_nothing(shared: Path) -> None:
    done = _execloop("runs", "--db", str(shared / "typo.db"))
    _one_line_error(done, f"no database at {shared / 'typo.db'}", "check the path")
    assert list(shared.iterdir()) == []
    done = _execloop("report", "run-1", "--db", str(shared / "typo.db"), "--out", str(shared))
    _one_line_error(done, "no database at")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a database at all\n" * 100, "is not an execloop database (not SQLite, or corrupt"),
        (b"SQLite format 3\x00" + b"\x07" * 5000, "is not an execloop database"),
        (None, "is an SQLite database but not an execloop one"),
        (b"", "is an empty database, not an execloop one"),
    ],
)
def test_runs_and_report_on_a_file_that_is_not_ours(
    shared: Path, content: bytes | None, message: str
) -> None:
    path = shared / "x.db"
    if content is None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE invoices (n INTEGER)")
    else:
        path.write_bytes(content)
    _one_line_error(_execloop("runs", "--db", str(path)), str(path), message)
    done = _execloop("report", "r", "--db", str(path), "--out", str(shared / "out"))
    _one_line_error(done, message)
    assert not (shared / "out").exists()


def test_runs_on_a_fifo_does_not_hang(shared: Path) -> None:
    os.mkfifo(shared / "pipe.db")
    _one_line_error(_execloop("runs", "--db", str(shared / "pipe.db")), "is not a regular file")


def test_an_archived_read_only_database_is_listed_and_reported(shared: Path) -> None:
    archive = shared / "archive"
    archive.mkdir()
    _run_with_a_result(archive / "execloop.db")
    assert [p.name for p in archive.iterdir()] == ["execloop.db"]  # WAL merged on close
    archive.chmod(0o777)  # another user may write here, yet reading leaves no -wal/-shm of theirs
    done = _execloop("runs", "--db", str(archive / "execloop.db"), unprivileged=True)
    assert done.returncode == 0 and "run-1" in done.stdout, done.stderr
    assert [p.name for p in archive.iterdir()] == ["execloop.db"]
    _archive(archive)
    done = _execloop("runs", "--db", str(archive / "execloop.db"), "--json", unprivileged=True)
    assert done.returncode == 0, done.stderr
    assert '"run": "run-1"' in done.stdout and '"passed": 1' in done.stdout
    out = shared / "report"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    done = _execloop(
        "report", "run-1", "--db", str(archive / "execloop.db"), "--out", str(out),
        unprivileged=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "t-1" in (out / "report.md").read_text()
    assert sorted(p.name for p in archive.iterdir()) == ["execloop.db"]  # nothing written


def test_a_read_only_copy_of_a_killed_runs_database(shared: Path) -> None:
    archive = shared / "killed"
    archive.mkdir()
    _run_with_a_result(archive / "execloop.db", crash=True)
    assert (archive / "execloop.db-wal").stat().st_size > 0
    _archive(archive)  # with its -shm: SQLite can read the WAL without writing
    done = _execloop("runs", "--db", str(archive / "execloop.db"), "--json", unprivileged=True)
    assert done.returncode == 0 and '"passed": 1' in done.stdout, done.stderr
    archive.chmod(0o755)
    (archive / "execloop.db-shm").unlink()  # copied without it: the WAL cannot be read
    archive.chmod(0o555)
    done = _execloop("runs", "--db", str(archive / "execloop.db"), unprivileged=True)
    _one_line_error(done, "has unmerged changes in execloop.db-wal", "copy execloop.db and")


def test_report_to_an_unwritable_out_says_which_directory_before_writing(shared: Path) -> None:
    _run_with_a_result(shared / "runs.db")
    (shared / "runs.db").chmod(0o644)
    locked = shared / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    db = str(shared / "runs.db")
    done = _execloop("report", "run-1", "--db", db, "--out", str(locked), unprivileged=True)
    _one_line_error(done, f"--out {locked}: the directory is not writable")
    done = _execloop("report", "run-1", "--db", db, "--out", str(locked / "sub"), unprivileged=True)
    _one_line_error(done, f"--out {locked / 'sub'}: cannot create the directory")
    (shared / "file").write_text("a file, not a directory")
    done = _execloop("report", "run-1", "--db", db, "--out", str(shared / "file" / "sub"))
    _one_line_error(done, "cannot create the directory (Not a directory)")
    assert list(locked.iterdir()) == []
    _one_line_error(_execloop("report", "nope", "--db", db), "no run 'nope' in")


def test_demo_to_an_unwritable_out_fails_before_any_work(shared: Path) -> None:
    locked = shared / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    done = _execloop("demo", "--out", str(locked), unprivileged=True)
    _one_line_error(done, f"--out {locked}: the directory is not writable")
    assert "SCRIPTED MODEL" not in done.stderr  # refused before the demo started
    assert list(locked.iterdir()) == []


def test_demo_on_a_read_only_database_says_so(shared: Path) -> None:
    out = shared / "archived-demo"
    out.mkdir()
    _run_with_a_result(out / "execloop.db")
    _archive(out)
    done = _execloop("demo", "--out", str(out), unprivileged=True)
    _one_line_error(done, "--out", "the directory is not writable")
    out.chmod(0o777)  # the directory is writable now, the database file is not
    done = _execloop("demo", "--out", str(out), unprivileged=True)
    _one_line_error(done, f"{out / 'execloop.db'} is read-only here")
    assert "SCRIPTED MODEL" not in done.stderr  # refused before the demo started
    assert [p.name for p in out.iterdir()] == ["execloop.db"]


def test_runs_lists_an_old_schema_database_without_migrating_it(shared: Path) -> None:
    path = shared / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL,"
            " meta TEXT NOT NULL);"
            "CREATE TABLE tasks (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, spec TEXT NOT NULL,"
            " state TEXT NOT NULL, submitted_at REAL NOT NULL, started_at REAL,"
            " finished_at REAL, launches INTEGER NOT NULL);"
            "CREATE TABLE results (task_id TEXT PRIMARY KEY, result TEXT NOT NULL,"
            " created_at REAL NOT NULL);"
        )
        db.execute("INSERT INTO runs VALUES ('old-run', 1, 2, '{}')")
        spec = Task(id="t", goal="g").model_dump_json()
        db.execute("INSERT INTO tasks VALUES ('t', 'old-run', ?, 'done', 1, 1, 2, 1)", (spec,))
        result = Result(task_id="t", status=TaskStatus.PASSED).model_dump_json()
        db.execute("INSERT INTO results VALUES ('t', ?, 2)", (result,))
    before = path.read_bytes()
    done = _execloop("runs", "--db", str(path), "--json")
    assert done.returncode == 0 and '"run": "old-run"' in done.stdout, done.stderr
    assert path.read_bytes() == before
    assert TaskStore(path, read_only=True).result("t") is not None


def test_a_run_id_shows_its_tasks_and_an_unknown_one_is_one_line(shared: Path) -> None:
    db = shared / "runs.db"
    _run_with_a_result(db)  # a run without progress: shown as such
    shown = _execloop("runs", "run-1", "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "t-1" in shown.stdout and "passed" in shown.stdout
    _one_line_error(_execloop("runs", "run-9", "--db", str(db)), "no run 'run-9'", "execloop runs")


def test_demo_pipeline_refuses_a_bad_model_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "pipeline"
    done = _execloop("demo", "--pipeline", "--model", "nonsense", "--out", str(out))
    _one_line_error(done, "bad model spec 'nonsense'")
    assert not out.exists()


def test_demo_pipeline_options_need_the_pipeline(tmp_path: Path) -> None:
    done = _execloop("demo", "--train-image", "execloop/train", "--out", str(tmp_path / "demo"))
    _one_line_error(done, "--model and --train-image apply to --pipeline only")
    assert not (tmp_path / "demo").exists()
