"""The broker on real Docker: tools through the bridge, fan-out, idempotence, admission,
cancellation, a SIGKILL in the middle of a run, and two brokers in two processes on one
database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from execloop.errors import BrokerBusyError
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.broker import Broker, summarize_run
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.models import AnthropicModel, ScriptedModel, ScriptedReply
from execloop.runtime.report import critical_steps
from execloop.runtime.store import TaskStore
from execloop.runtime.task import ErrorKind, Task, TaskStatus
from execloop.sandboxes.reaper import LABEL_MANAGED, LABEL_OWNER
from execloop.sandboxes.tempdirs import orphaned_temp_dirs, remove_temp_dir
from tests.fakes import FakeAnthropicServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "tests.contract.broker_child"]
OK_SCRIPT = "import json\njson.dump({'ok': True}, open('result.json', 'w'))\n"
OK_CHECK = ExpressionCheck(expr='result["ok"] == True')

TOOL_SCRIPT = """\
import json
from execloop_tools import lookup, add, record
total = 0
for i in range(50):
    value = lookup(key=f"k{i % 5}")
    total = add(a=total, b=value["weight"])
    record(note=f"step {i}: {total}")
json.dump({"total": total}, open("result.json", "w"))
print("total", total)
"""


def _registry() -> ToolRegistry:
    registry = ToolRegistry()
    catalogue = {f"k{i}": {"weight": i + 1, "blurb": "x" * 400} for i in range(5)}
    notes: list[str] = []

    @registry.tool
    def lookup(key: str) -> dict[str, Any]:
        """Look a key up in the host's catalogue (credentials stay on the host)."""
        return catalogue[key]

    @registry.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @registry.tool
    def record(note: str) -> bool:
        """Append a note to the host's log."""
        notes.append(note)
        return True

    return registry


async def test_tools_in_a_loop_only_the_answer_reaches_the_model(tmp_path: Path) -> None:
    task = Task(
        goal="Sum the weights of k0..k4 ten times using the host tools.",
        tools=("lookup", "add", "record"),
        checks=(ExpressionCheck(expr='result["total"] == 150'),),
    )
    with FakeAnthropicServer() as server:
        server.push_reply(script=TOOL_SCRIPT, usage={"input_tokens": 1200, "output_tokens": 150})
        model = AnthropicModel(model="claude-test", api_key="k", base_url=server.base_url)
        async with (
            model,
            Broker(db=tmp_path / "runs.db", model=model, registry=_registry()) as broker,
        ):
            (result,) = await broker.map([task])
        seen = server.requests
    assert result.status is TaskStatus.PASSED, result.checks
    assert len(seen) == 1  # one model turn: the 150 calls and their results never reached it
    prompt = str(seen[0].body)
    assert "def lookup(key: str)" in prompt and "blurb" not in prompt
    calls = TaskStore(tmp_path / "runs.db").tool_calls(task.id)
    assert len(calls) == 150 and {c["tool"] for c in calls} == {"lookup", "add", "record"}
    classic = result.usage_classic_estimate
    assert classic is not None and classic.calls == 150
    assert classic.tokenizer.startswith("o200k_base")
    # every classic round re-sends the growing context: far more than the one code-mode turn
    assert classic.sequential.uncached.total_input_tokens > 20 * result.usage.total_input_tokens


async def test_eight_tasks_run_side_by_side(tmp_path: Path) -> None:
    model = ScriptedModel(
        [ScriptedReply(script=OK_SCRIPT, delay_s=1.0)], when_exhausted="repeat_last"
    )
    tasks = [Task(goal=f"task {n}", checks=(OK_CHECK,)) for n in range(8)]
    async with Broker(
        db=tmp_path / "runs.db", model=model, max_concurrency=8, warm_sandboxes=16
    ) as broker:
        await broker.warm_up()  # a running broker's pool is warm before work arrives
        started = time.monotonic()
        results = await broker.map(tasks)
        wall = time.monotonic() - started
        run_id = broker.run_id
    assert all(r.status is TaskStatus.PASSED for r in results)
    serial = sum(r.timings.total_s for r in results)
    print(f"serial {serial:.2f} s, wall {wall:.2f} s, speedup {serial / wall:.1f}x")
    assert wall <= serial / 5
    summary = summarize_run(TaskStore(tmp_path / "runs.db"), run_id)
    assert len(summary.tasks) == 8
    ((stage, orchestration, slowest),) = critical_steps(summary)
    assert (stage, orchestration) == ("main", 1)
    assert slowest is not None and slowest.agent_steps == 1  # Critical Steps = 1 + 1


async def test_resubmitting_a_task_id_returns_the_stored_result(tmp_path: Path) -> None:
    task = Task(id="fixed-id", goal="ok", checks=(OK_CHECK,))
    async with Broker(db=tmp_path / "runs.db", model=ScriptedModel([OK_SCRIPT])) as broker:
        first = await broker.result(await broker.submit(task))
    wrong = ScriptedModel(["raise SystemExit(1)"])  # would fail: the stored result must be used
    async with Broker(db=tmp_path / "runs.db", model=wrong) as broker:
        again = await broker.result(await broker.submit(task))
    assert again == first and first.status is TaskStatus.PASSED
    assert wrong.remaining == 1


async def test_admission_control_and_cancellation(tmp_path: Path) -> None:
    slow = ScriptedModel(
        [ScriptedReply(script=OK_SCRIPT, delay_s=30)], when_exhausted="repeat_last"
    )
    async with Broker(db=tmp_path / "runs.db", model=slow, max_pending=2) as broker:
        a = await broker.submit(Task(goal="a", checks=(OK_CHECK,)))
        b = await broker.submit(Task(goal="b", checks=(OK_CHECK,)))
        with pytest.raises(BrokerBusyError, match="max_pending=2") as busy:
            await broker.submit(Task(goal="c", checks=(OK_CHECK,)))
        assert (busy.value.pending, busy.value.max_pending) == (2, 2)
        await anyio.sleep(0.2)
        assert await broker.cancel(a) and await broker.cancel(b)
        results = await broker.gather([a, b])
    assert [r.status for r in results] == [TaskStatus.ERROR, TaskStatus.ERROR]
    assert [r.error for r in results] == ["cancelled", "cancelled"]
    assert [r.error_kind for r in results] == [ErrorKind.CANCELLED, ErrorKind.CANCELLED]
    assert TaskStore(tmp_path / "runs.db").result_counts() == {a: 1, b: 1}


def test_sigkill_mid_run_then_restart_finishes_every_task_once(
    tmp_path: Path, docker_client: Any
) -> None:
    db = tmp_path / "runs.db"
    command = [*CHILD, str(db)]
    first = subprocess.Popen(command, cwd=ROOT)
    store = TaskStore(db) if db.exists() else None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db.exists():
            store = store or TaskStore(db)
            if len(store.result_counts()) >= 4:
                break
        time.sleep(0.1)
    assert store is not None
    done_before = len(store.result_counts())
    assert done_before < 20, "the broker finished before it could be killed"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    reap_temp_dirs_of(first.pid)
    second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    printed = second.communicate(timeout=300)[0]
    assert second.returncode == 0
    assert printed.split() == [f"task-{n:02d}=passed" for n in range(20)]
    counts = store.result_counts()
    assert sorted(counts) == [f"task-{n:02d}" for n in range(20)]
    assert set(counts.values()) == {1}
    assert all(store.result(t).status is TaskStatus.PASSED for t in counts)  # type: ignore[union-attr]
    assert any(len(store.attempts(t)) > 1 or store.task(t).launches > 1 for t in counts)  # type: ignore[union-attr]
    owners = {str(first.pid), str(second.pid)}
    leftover = [  # the killed broker's containers were reaped by the restarted one
        c.name
        for c in docker_client.containers.list(all=True, filters={"label": LABEL_MANAGED})
        if c.labels.get(LABEL_OWNER, "").split(":")[1] in owners
    ]
    assert leftover == []


def reap_temp_dirs_of(pid: int) -> None:
    """Remove the host temp dirs a killed process left (its sockets' directories)."""
    for path in orphaned_temp_dirs():
        if f"-{pid}." in path.name:
            remove_temp_dir(path)


def test_two_brokers_in_two_processes_run_each_task_once(tmp_path: Path) -> None:
    db, calls, go = tmp_path / "runs.db", tmp_path / "calls.log", tmp_path / "go"
    children = [  # one submits first to last, the other last to first: they meet midway
        subprocess.Popen(
            [*CHILD, str(db), "--calls-log", str(calls), "--barrier", str(go), *order],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for order in ([], ["--reverse"])
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()  # both brokers are running: they submit the same 20 tasks at once
    printed = [child.communicate(timeout=300)[0].split() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    every_task_passed = [f"task-{n:02d}=passed" for n in range(20)]
    assert printed == [every_task_passed, every_task_passed]  # each got all 20 results
    pairs = [line.split() for line in calls.read_text().splitlines()]
    assert Counter(task for _, task in pairs) == {f"task-{n:02d}": 1 for n in range(20)}
    # how the tasks split depends on timing (often both run some, sometimes one runs all)
    print("tasks run per broker process:", Counter(pid for pid, _ in pairs))
    store = TaskStore(db)
    assert {row.id: row.launches for row in store.tasks()} == {
        f"task-{n:02d}": 1 for n in range(20)
    }
    assert set(store.result_counts().values()) == {1}
