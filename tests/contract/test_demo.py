"""`execloop demo` sharing one --out: two at once, and a re-run after a SIGKILL, on real Docker.

Each demo owns its own tasks; the second never touches the first's live ones, and a re-run
takes over (and passes) the tasks of a demo that was killed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from execloop.runtime.store import TaskStore
from execloop.runtime.task import TaskStatus
from execloop.sandboxes.reaper import LABEL_MANAGED, LABEL_OWNER
from tests.contract.test_broker import reap_temp_dirs_of

DEMO_TASKS = 5  # four skills' examples and the tools task


def _demo(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "execloop.runtime.cli", "demo", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def _assert_every_result_passed(db: Path, *, tasks: int) -> TaskStore:
    store = TaskStore(db, read_only=True)
    rows = store.tasks()
    assert len(rows) == tasks
    results = {row.id: store.result(row.id) for row in rows}
    errors = {i: r.error for i, r in results.items() if r is None or r.error is not None}
    assert errors == {}, errors  # no "error internal: '<id>'", no task left without a result
    assert all(r is not None and r.status is TaskStatus.PASSED for r in results.values())
    assert set(store.result_counts().values()) == {1}
    return store


def test_two_demos_at_once_on_one_out_both_pass_their_own_tasks(tmp_path: Path) -> None:
    out = tmp_path / "d"
    demos = [_demo(out), _demo(out)]
    outputs = [demo.communicate(timeout=600) for demo in demos]
    for demo, (stdout, stderr) in zip(demos, outputs, strict=True):
        assert demo.returncode == 0, stderr
        assert "Traceback" not in stdout + stderr and "internal" not in stdout + stderr
        assert stdout.count("passed") == DEMO_TASKS
    store = _assert_every_result_passed(out / "execloop.db", tasks=2 * DEMO_TASKS)
    assert len(store.runs()) == 2
    assert {row.launches for row in store.tasks()} == {1}  # none was run by both


def test_a_killed_demos_tasks_are_resumed_and_passed_by_a_rerun(
    tmp_path: Path, docker_client: Any
) -> None:
    out = tmp_path / "d"
    db = out / "execloop.db"
    first = _demo(out)
    deadline = time.monotonic() + 300
    running = 0
    while time.monotonic() < deadline and first.poll() is None and not running:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    query = "SELECT COUNT(*) FROM tasks WHERE state = 'running'"
                    running = conn.execute(query).fetchone()[0]
            except sqlite3.Error:  # created just now: its tables are not there yet
                continue
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    reap_temp_dirs_of(first.pid)
    assert running, "the first demo never started a task"
    killed = TaskStore(db, read_only=True)
    (killed_run,) = killed.runs()
    unfinished = {row.id for row in killed.unfinished()}
    killed.close()
    assert unfinished, "the first demo finished before it could be killed"

    second = _demo(out)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert f"resuming {len(unfinished)} unfinished task(s) of an earlier run" in stderr
    assert all(task_id in stderr and task_id in stdout for task_id in unfinished)
    assert "resumed from an earlier run" in stdout
    assert stdout.count("passed") == DEMO_TASKS + len(unfinished)
    report = (out / "report.md").read_text()
    assert all(task_id in report for task_id in unfinished)
    store = _assert_every_result_passed(db, tasks=2 * DEMO_TASKS)
    assert {row.id for row in store.tasks(killed_run["id"])} >= unfinished
    leftover = [  # the killed demo's containers were reaped by the re-run
        c.name
        for c in docker_client.containers.list(all=True, filters={"label": LABEL_MANAGED})
        if c.labels.get(LABEL_OWNER, "").split(":")[1] == str(first.pid)
    ]
    assert leftover == []
