"""The broker without Docker: real SQLite, sandboxes from ``execloop.testing.FakeBackend``.
Exactly one result per task, bounded concurrency, idempotent submission, cancellation,
resumption, skills from skill_dirs, and error kinds stored with the results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from execloop.errors import BrokerBusyError, BrokerStoppedError
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.broker import Broker
from execloop.runtime.models.base import ModelRequest
from execloop.runtime.store import TaskStore
from execloop.runtime.task import Budget, ErrorKind, Task, TaskStatus
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.reaper import owner_id
from execloop.testing import FakeBackend, FakeRun, FunctionModel, ScriptedModel

from .test_loop_fake import TOTAL_IS_10, interpret, program

pytestmark = pytest.mark.anyio

OK = program({"result.json": {"total": 10}})


def _task(task_id: str, **fields: Any) -> Task:
    fields.setdefault("checks", (TOTAL_IS_10,))
    return Task(id=task_id, goal="Write result.json with total 10.", **fields)


def _ok() -> ScriptedModel:
    return ScriptedModel([OK], when_exhausted="repeat_last")


def _broker(
    db: Path | TaskStore, backend: FakeBackend, model: Any = None, **options: Any
) -> Broker:
    return Broker(
        db=db, model=model or _ok(), sandbox_factory=backend, reap_orphans=False, **options
    )


async def test_every_task_gets_exactly_one_result_with_bounded_concurrency(
    tmp_path: Path,
) -> None:
    inside = peak = 0
    both = anyio.Event()

    async def handler(run: FakeRun) -> Any:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        if inside == 2:
            both.set()
        with anyio.fail_after(30):  # a hang guard, not a timing assertion
            await both.wait()
        await anyio.lowlevel.checkpoint()
        inside -= 1
        return interpret(run)

    backend = FakeBackend(handler)
    tasks = [_task(f"t{n}") for n in range(6)]
    async with _broker(tmp_path / "runs.db", backend, max_concurrency=2) as broker:
        results = await broker.map(tasks)
        again = await broker.map(tasks)  # answered from the store: nothing runs again
    assert [r.task_id for r in results] == [t.id for t in tasks]
    assert all(r.status is TaskStatus.PASSED for r in results)
    assert again == results and peak == 2
    assert sum(len(sandbox.runs) for sandbox in backend.sandboxes) == 6
    assert TaskStore(tmp_path / "runs.db").result_counts() == {t.id: 1 for t in tasks}


async def test_a_cancelled_task_ends_with_kind_cancelled_in_the_store(tmp_path: Path) -> None:
    started = anyio.Event()

    async def forever(run: FakeRun) -> None:
        started.set()
        await anyio.sleep_forever()

    async with _broker(tmp_path / "runs.db", FakeBackend(forever)) as broker:
        await broker.submit(_task("slow"))
        await started.wait()
        assert await broker.cancel("slow")
        result = await broker.result("slow")
        assert not await broker.cancel("slow")  # it has its result
    assert (result.status, result.error_kind) == (TaskStatus.ERROR, ErrorKind.CANCELLED)
    stored = TaskStore(tmp_path / "runs.db").result("slow")
    assert stored == result


async def test_a_bug_is_an_internal_error_result(tmp_path: Path) -> None:
    def broken(spec: SandboxSpec) -> Any:
        raise RuntimeError("a bug in a factory")

    async with Broker(
        db=tmp_path / "runs.db", model=_ok(), sandbox_factory=broken, reap_orphans=False
    ) as broker:
        (result,) = await broker.map([_task("t")])
    assert (result.status, result.error_kind) == (TaskStatus.ERROR, ErrorKind.INTERNAL)
    assert result.error == "internal: RuntimeError: a bug in a factory"


async def test_admission_control_says_how_many_are_pending(tmp_path: Path) -> None:
    async def forever(run: FakeRun) -> None:
        await anyio.sleep_forever()

    async with _broker(tmp_path / "runs.db", FakeBackend(forever), max_pending=1) as broker:
        await broker.submit(_task("a"))
        with pytest.raises(BrokerBusyError) as busy:
            await broker.submit(_task("b"))
        await broker.cancel("a")
    assert (busy.value.pending, busy.value.max_pending) == (1, 1)


async def test_a_task_of_a_stopped_broker_has_no_result_and_says_which(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "runs.db")

    async def forever(run: FakeRun) -> None:
        await anyio.sleep_forever()

    broker = _broker(store, FakeBackend(forever))

    async def stop_midway() -> None:
        async with broker:
            await broker.submit(_task("left"))
            await anyio.lowlevel.checkpoint()
            raise RuntimeError("the orchestrator stopped")

    with pytest.raises(BaseExceptionGroup):
        await stop_midway()
    with pytest.raises(BrokerStoppedError) as stopped:
        await broker.result("left")
    assert stopped.value.task_id == "left" and store.result("left") is None
    async with _broker(store, FakeBackend(interpret)) as next_one:  # resumed, run once more
        assert next_one.resumed == ("left",)
        assert (await next_one.result("left")).status is TaskStatus.PASSED
    assert store.result_counts() == {"left": 1}


async def test_a_dead_brokers_task_is_resumed_to_one_result(tmp_path: Path) -> None:
    child = await anyio.open_process([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = f"{owner_id(child.pid)}:cafe0123"  # a killed broker's owner id
    child.kill()
    await child.wait()
    db = tmp_path / "runs.db"
    TaskStore(db).add_task(_task("orphan"), "killed-run", owner=dead, lease_s=30)
    backend = FakeBackend(interpret)
    async with _broker(db, backend) as broker:
        assert broker.resumed == ("orphan",)
        result = await broker.result("orphan")
    assert result.status is TaskStatus.PASSED and len(backend.sandboxes) == 1
    assert TaskStore(db).result_counts() == {"orphan": 1}


class _ClosingRegistry(ToolRegistry):
    closed = False

    async def aclose(self) -> None:
        self.closed = True
        await super().aclose()


async def test_a_registry_factory_gives_each_task_its_own_closed_with_it(tmp_path: Path) -> None:
    made: dict[str, _ClosingRegistry] = {}

    def per_task(task: Task) -> ToolRegistry:
        made[task.id] = _ClosingRegistry()
        return made[task.id]

    async with _broker(tmp_path / "runs.db", FakeBackend(interpret), registry=per_task) as broker:
        results = await broker.map([_task("a"), _task("b")])
    assert [r.status for r in results] == [TaskStatus.PASSED] * 2
    assert sorted(made) == ["a", "b"] and made["a"] is not made["b"]
    assert all(registry.closed for registry in made.values())


async def test_the_broker_resolves_skills_from_its_skill_dirs(tmp_path: Path) -> None:
    folder = tmp_path / "skills" / "totals"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        "---\nname: totals\ndescription: Write totals.\nversion: 1.0.0\n"
        "inputs: {type: object}\n---\nPut the total under the key `total`.\n"
    )
    seen: list[ModelRequest] = []

    def reply(request: ModelRequest, number: int) -> str:
        seen.append(request)
        return OK

    tasks = [_task("skilled", skill="totals"), _task("unknown", skill="nope")]
    async with _broker(
        tmp_path / "runs.db",
        FakeBackend(interpret),
        FunctionModel(reply),
        skill_dirs=[tmp_path / "skills"],
    ) as broker:
        skilled, unknown = await broker.map(tasks)
    assert skilled.status is TaskStatus.PASSED
    assert any("under the key `total`" in block for block in seen[0].system)
    assert (unknown.status, unknown.error_kind) == (TaskStatus.ERROR, ErrorKind.INVALID_TASK)
    assert "unknown skill 'nope'; available: " in (unknown.error or "")
    assert "totals" in (unknown.error or "") and "data-clean" in (unknown.error or "")


async def test_budget_and_model_failures_are_stored_with_their_kind(tmp_path: Path) -> None:
    failing = ScriptedModel([program({"result.json": {"total": 9}})], when_exhausted="repeat_last")
    tasks = [_task("poor", budget=Budget(max_tokens=1))]
    async with _broker(tmp_path / "runs.db", FakeBackend(interpret), failing) as broker:
        (poor,) = await broker.map(tasks)
    exhausted = ScriptedModel([OK])  # one reply for two tasks: the second one's model fails
    async with _broker(tmp_path / "runs.db", FakeBackend(interpret), exhausted) as broker:
        first, second = await broker.map([_task("m1"), _task("m2")])
    store = TaskStore(tmp_path / "runs.db")
    assert store.result("poor").error_kind is ErrorKind.BUDGET  # type: ignore[union-attr]
    assert poor.status is TaskStatus.BUDGET_EXHAUSTED
    kinds = {first.status, second.status}
    assert kinds == {TaskStatus.PASSED, TaskStatus.ERROR}
    failed = first if first.status is TaskStatus.ERROR else second
    assert store.result(failed.task_id).error_kind is ErrorKind.MODEL  # type: ignore[union-attr]
