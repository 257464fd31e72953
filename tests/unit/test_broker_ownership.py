"""Task ownership between brokers on one database, in one process, on real SQLite and the
real ``restricted`` sandbox (no Docker): a live broker's tasks are followed, never run twice;
a stopped or dead broker's tasks are resumed; a task whose model cannot be built is left alone.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from execloop.runtime.broker import Broker
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.models import ScriptedModel, ScriptedReply
from execloop.runtime.models.base import Model
from execloop.runtime.ownership import BrokerOwner, owner_is_gone
from execloop.runtime.store import TaskStore
from execloop.runtime.task import Task, TaskStatus
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.reaper import owner_id

pytestmark = pytest.mark.anyio

OK_SCRIPT = "import json\njson.dump({'ok': True}, open('result.json', 'w'))\n"


def _task(task_id: str) -> Task:
    return Task(
        id=task_id,
        goal="Write result.json with ok true.",
        checks=(ExpressionCheck(expr='result["ok"] == True'),),
        sandbox=SandboxSpec(backend="restricted"),
    )


def _ok(delay_s: float = 0.0) -> ScriptedModel:
    return ScriptedModel(
        [ScriptedReply(script=OK_SCRIPT, delay_s=delay_s)], when_exhausted="repeat_last"
    )


def _broker(db: Path, model: Model | object, **options: object) -> Broker:
    return Broker(db=db, model=model, reap_orphans=False, **options)  # type: ignore[arg-type]


def _dead_process_owner() -> str:
    """The owner id of a process of this host that has exited (as a killed broker's)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = owner_id(child.pid)
    child.kill()
    child.wait()
    return f"{owner}:cafe0123"


def test_owner_is_gone_by_token_process_and_lease() -> None:
    owner = BrokerOwner(lease_s=30)
    assert owner_is_gone(owner.id, None)  # not held yet: no broker of this process runs it
    owner.hold(lambda: None)
    try:
        assert not owner_is_gone(owner.id, None)
    finally:
        owner.release()
    assert owner_is_gone(owner.id, time.time() + 60)  # stopped, whatever its lease says
    assert owner_is_gone(None, None)
    assert owner_is_gone(_dead_process_owner(), time.time() + 60)
    alive = f"{owner_id(1)}:cafe0123"  # init, alive on this host: leases do not matter
    assert not owner_is_gone(alive, time.time() - 60)
    remote = f"{socket.gethostname()}-other:4242:12345:cafe0123"
    assert not owner_is_gone(remote, time.time() + 60)
    assert owner_is_gone(remote, time.time() - 1)
    assert owner_is_gone(remote, None)


async def test_a_live_brokers_task_is_followed_to_its_result_not_run_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    wrong = ScriptedModel(["raise SystemExit(1)"])  # would fail if it ever ran the task
    async with _broker(db, _ok(delay_s=1.0)) as first:
        await first.submit(_task("shared"))
        async with _broker(db, wrong) as second:
            assert second.resumed == ()  # the first broker is alive: nothing to resume
            await second.submit(_task("shared"))
            assert not await second.cancel("shared")  # not its task to cancel
            followed = await second.result("shared")
        assert followed == await first.result("shared")
    assert followed.status is TaskStatus.PASSED and wrong.remaining == 1
    store = TaskStore(db)
    assert store.task("shared").launches == 1  # type: ignore[union-attr]
    assert store.result_counts() == {"shared": 1}


async def test_a_stopped_brokers_tasks_are_resumed_by_the_next(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"

    async def stop_midway() -> None:
        async with _broker(db, _ok(delay_s=30)) as first:
            await first.submit(_task("a"))
            await anyio.sleep(0.5)
            raise RuntimeError("orchestrator stopped")

    with pytest.raises(BaseExceptionGroup) as stopped:
        await stop_midway()
    assert stopped.group_contains(RuntimeError, match="orchestrator stopped")
    store = TaskStore(db)
    row = store.task("a")
    assert row is not None and row.owner is None and store.result("a") is None  # released
    async with _broker(db, _ok()) as second:
        assert second.resumed == ("a",)
        result = await second.result("a")
    assert result.status is TaskStatus.PASSED
    assert store.task("a").launches == 2  # type: ignore[union-attr]


async def test_a_dead_brokers_task_is_left_alone_when_no_model_can_be_built(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "runs.db"
    dead = _dead_process_owner()
    TaskStore(db).add_task(_task("orphan"), "killed-run", owner=dead, lease_s=30)

    def only_mine(task: Task) -> Model:
        raise KeyError(task.id)  # e.g. a demo factory that does not know the task

    with caplog.at_level(logging.WARNING, logger="execloop.runtime.broker"):
        async with _broker(db, only_mine) as broker:
            assert broker.resumed == ()
    assert "not resuming task orphan: KeyError" in caplog.text
    store = TaskStore(db)
    assert store.result("orphan") is None  # not poisoned with an "internal" error result
    assert store.task("orphan").owner == dead  # type: ignore[union-attr]
    async with _broker(db, _ok()) as able:  # a broker that can build its model resumes it
        assert able.resumed == ("orphan",)
        assert (await able.result("orphan")).status is TaskStatus.PASSED


async def test_a_followed_task_is_taken_over_when_its_owners_lease_expires(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    remote = f"{socket.gethostname()}-other:4242:12345:cafe0123"  # a broker on another host
    TaskStore(db).add_task(_task("remote"), "remote-run", owner=remote, lease_s=4)
    async with _broker(db, _ok()) as broker:
        assert broker.resumed == ()  # its lease is still valid
        await broker.submit(_task("remote"))
        result = await broker.result("remote")  # polls until the lease expired, then runs it
    assert result.status is TaskStatus.PASSED
    row = TaskStore(db).task("remote")
    assert row is not None and row.owner == broker.owner.id and row.launches == 1


async def test_two_brokers_submitting_the_same_tasks_run_each_once(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    tasks = [_task(f"t{n}") for n in range(4)]
    outcome: dict[str, list[object]] = {}

    async def run(name: str, broker: Broker) -> None:
        outcome[name] = list(await broker.map(tasks))

    async with (
        _broker(db, _ok(0.2)) as first,
        _broker(db, _ok(0.2)) as second,
        anyio.create_task_group() as group,
    ):
        group.start_soon(run, "first", first)
        group.start_soon(run, "second", second)
    assert outcome["first"] == outcome["second"]
    store = TaskStore(db)
    assert [store.task(t.id).launches for t in tasks] == [1, 1, 1, 1]  # type: ignore[union-attr]
    assert all(store.result(t.id).status is TaskStatus.PASSED for t in tasks)  # type: ignore[union-attr]
