"""SandboxGate: bounded live sandboxes and concurrent starts (back-pressure, issue 14)."""

from __future__ import annotations

import anyio
import pytest

from execloop.errors import ConfigError, SandboxStartError
from execloop.runtime.broker import Broker
from execloop.runtime.task import Task, TaskStatus
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.gate import SandboxGate
from execloop.testing import FakeBackend, FakeSandbox, FunctionModel

pytestmark = pytest.mark.anyio


class _Counting:
    """A factory of fake sandboxes whose start takes a moment, counting what overlaps."""

    def __init__(self, *, fail: bool = False) -> None:
        self.live = self.starting = self.peak_live = self.peak_starting = 0
        self.fail = fail
        self.full = anyio.Event()  # set once ``full_at`` sandboxes were live at once
        self.full_at = 3

    def __call__(self, spec: SandboxSpec) -> FakeSandbox:
        counter = self

        class _Slow(FakeSandbox):
            async def start(self) -> None:
                counter.starting += 1
                counter.peak_starting = max(counter.peak_starting, counter.starting)
                try:
                    await anyio.sleep(0.01)
                    if counter.fail:
                        raise SandboxStartError("no room")
                finally:
                    counter.starting -= 1
                counter.live += 1
                counter.peak_live = max(counter.peak_live, counter.live)
                if counter.live >= counter.full_at:
                    counter.full.set()
                await super().start()

            async def close(self) -> None:
                if self.started and not self.closed:
                    counter.live -= 1
                await super().close()

        return _Slow(spec)


async def test_live_and_starting_sandboxes_stay_within_their_bounds() -> None:
    counting = _Counting()
    gate = SandboxGate(counting, max_live=3, max_starting=1)

    async def use() -> None:
        async with gate(SandboxSpec()) as sandbox:
            assert (await sandbox.exec("print(1)")).exit_code == 0
            await counting.full.wait()  # hold on until the gate is full

    async with anyio.create_task_group() as tasks:
        for _ in range(12):
            tasks.start_soon(use)
    assert (counting.peak_live, counting.peak_starting) == (3, 1)
    assert counting.live == 0
    assert gate.live.borrowed_tokens == 0


async def test_a_failed_start_gives_its_slot_back() -> None:
    gate = SandboxGate(_Counting(fail=True), max_live=1, max_starting=1)
    for _ in range(3):  # with the slot leaked, the second attempt would wait for ever
        with anyio.fail_after(5), pytest.raises(SandboxStartError):
            async with gate(SandboxSpec()):
                pass
    assert gate.live.borrowed_tokens == 0


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4"])
def test_bounds_must_be_whole_numbers(bad: object) -> None:
    with pytest.raises(ConfigError, match="max_live must be a whole number"):
        SandboxGate(FakeBackend(), max_live=bad)  # type: ignore[arg-type]


async def test_the_broker_bounds_live_sandboxes_for_a_burst_of_tasks(tmp_path: object) -> None:
    counting = _Counting()
    model = FunctionModel(lambda request, number: "print('ok')")
    async with Broker(
        db=tmp_path / "runs.db",  # type: ignore[operator]
        model=model,
        max_concurrency=20,
        sandbox_factory=counting,
        max_live_sandboxes=4,
        max_starting_sandboxes=2,
    ) as broker:
        results = await broker.map([Task(id=f"t{i}", goal="print ok") for i in range(20)])
    assert [r.status for r in results] == [TaskStatus.PASSED] * 20
    assert counting.peak_live <= 4 and counting.peak_starting <= 2
    assert counting.live == 0


@pytest.mark.parametrize("name", ["max_live_sandboxes", "max_starting_sandboxes"])
def test_the_broker_names_its_own_bad_bound(name: str, tmp_path: object) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be a whole number >= 1 or None, not 0"):
        Broker(db=tmp_path / "runs.db", model=FunctionModel(lambda r, n: None), **{name: 0})  # type: ignore[operator, arg-type]
    assert not (tmp_path / "runs.db").exists()  # type: ignore[operator]  # refused first
