"""Progress events on every backend: ``execloop_progress`` imports in each sandbox, and its
lines (and one written by hand) come back through ``ProgressReader`` from the streamed output,
hidden from the output a live view shows."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from mcp import Client

from execloop.runtime.broker import Broker
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.loop import LoopEvent
from execloop.runtime.mcp_server import build_server
from execloop.runtime.models import ScriptedModel
from execloop.runtime.store import PROGRESS_HISTORY, PROGRESS_LATEST, TaskStore
from execloop.runtime.task import Task, TaskStatus
from execloop.sandboxes import ExitReason, SandboxSpec
from execloop.sandboxes.progress import ProgressEvent, ProgressReader

from .backends import BACKEND_SPECS, make_sandbox

pytestmark = pytest.mark.anyio

_SCRIPT = """
import execloop_progress
for step in range(1, 4):
    execloop_progress.report(step, 3, loss=1.0 / step)
print('{"execloop": "progress", "step": 5, "note": "not a number"}')
print('{"execloop": "progress", "step": "five"}')
print("after")
"""


@pytest.mark.parametrize("backend", list(BACKEND_SPECS))
async def test_the_shipped_module_reports_progress(backend: str) -> None:
    events: list[ProgressEvent] = []
    shown: list[tuple[str, str]] = []
    ticks = itertools.count()  # a second between reads: nothing is thinned here
    reader = ProgressReader(
        events.append,
        on_output=lambda s, t: shown.append((s, t)),
        max_per_s=1,
        clock=ticks.__next__,
    )
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(_SCRIPT, timeout=60, on_output=reader.feed)
    reader.close()
    assert result.exit_reason is ExitReason.OK, result.stderr
    # the module prints the first report and the one reaching the total (the 2nd is too soon)
    assert [(e.step, e.total, e.metrics) for e in events] == [
        (1, 3, {"loss": 1.0}),
        (3, 3, {"loss": pytest.approx(1 / 3)}),
        (5, None, {}),  # written by hand; the text "metric" is dropped
    ]
    # the result keeps every line; the live view misses only the events
    assert result.stdout.count('"execloop": "progress"') == 4
    assert "".join(t for s, t in shown if s == "stdout") == (
        '{"execloop": "progress", "step": "five"}\nafter\n'
    )


TRAIN_SCRIPT = """\
import json, time
import execloop_progress
execloop_progress.MIN_INTERVAL_S = 0
for step in range(1, 201):
    execloop_progress.report(step, 200, loss=4.0 - step / 100)
    time.sleep(0.002)
json.dump({"ok": True}, open("result.json", "w"))
"""


async def test_the_broker_keeps_each_attempts_progress_bounded(tmp_path: Path) -> None:
    """Attempt 1 crashes half-way, attempt 2 trains to the end: both attempts' progress is in
    the store, thinned (200 lines a run, at most 10 events a second read, at most
    PROGRESS_LATEST + PROGRESS_HISTORY kept), each from its first step to its last."""
    crash = TRAIN_SCRIPT.replace("time.sleep(0.002)", "time.sleep(0.002)\n    assert step < 100")
    model = ScriptedModel([crash, TRAIN_SCRIPT])
    task = Task(
        goal="train",
        checks=(ExpressionCheck(expr='result["ok"] == True'),),
        sandbox=SandboxSpec(backend="local"),
    )
    seen: list[LoopEvent] = []
    async with Broker(
        db=tmp_path / "runs.db", model=model, on_event=lambda task_id, e: seen.append(e)
    ) as broker:
        await broker.submit(task)
        result = await broker.result(task.id)
    assert result.status is TaskStatus.PASSED, result.error
    store = TaskStore(tmp_path / "runs.db", read_only=True)
    kept = store.progress(task.id)
    store.close()
    by_attempt = {n: [r.event for r in kept if r.attempt == n] for n in (1, 2)}
    assert by_attempt[1][0].step == 1 and by_attempt[1][-1].step == 100
    assert by_attempt[2][0].step == 1 and by_attempt[2][-1].step == 200
    assert by_attempt[2][-1].metrics == {"loss": pytest.approx(2.0)}
    for events in by_attempt.values():
        assert 2 <= len(events) <= PROGRESS_LATEST + PROGRESS_HISTORY
        assert [e.step for e in events] == sorted(e.step for e in events)
    live = [e for e in seen if e.kind == "progress"]
    assert len(live) == len(kept)  # what a live view saw is what was stored


async def test_mcp_run_task_forwards_the_scripts_progress(tmp_path: Path) -> None:
    """The official client's ``progress_callback`` sees each attempt, the script's steps (with
    their metrics) and the verdict, on one scale that never goes back although attempt 2
    starts again at step 1 (tasks run in real bubblewrap sandboxes)."""
    replies = tmp_path / "replies.json"
    short = TRAIN_SCRIPT.replace("range(1, 201)", "range(1, 21)").replace("step, 200", "step, 20")
    crash = short.replace("time.sleep(0.002)", "time.sleep(0.002)\n    assert step < 10")
    replies.write_text(json.dumps([crash, short]))
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    server = build_server(spec=SandboxSpec(backend="local"), model=f"scripted:{replies}")
    async with Client(server) as client:
        called = await client.call_tool(
            "run_task",
            {"goal": "train", "checks": [{"kind": "expression", "expr": "result['ok']"}]},
            progress_callback=on_progress,
        )
    assert called.structured_content is not None
    assert called.structured_content["status"] == "passed", called.content
    assert seen[0] == (0, 5, "attempt 1 of 5") and seen[-1] == (5, 5, "passed after attempt 2 of 5")
    assert (1, 5, "attempt 2 of 5") in seen
    first = [(d, m) for d, _, m in seen if (m or "").startswith("attempt 1 of 5: step")]
    second = [(d, m) for d, _, m in seen if (m or "").startswith("attempt 2 of 5: step")]
    assert first[0] == (pytest.approx(0.99 / 20), "attempt 1 of 5: step 1/20, loss 3.99")
    assert first[-1][1] == "attempt 1 of 5: step 10/20, loss 3.9"  # where it crashed
    assert second[0] == (pytest.approx(1 + 0.99 / 20), "attempt 2 of 5: step 1/20, loss 3.99")
    assert second[-1] == (pytest.approx(1.99), "attempt 2 of 5: step 20/20, loss 3.8")
    values = [done for done, _, _ in seen]
    assert all(later > earlier for earlier, later in itertools.pairwise(values)), values
