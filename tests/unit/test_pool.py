"""Pool semantics with an instrumented in-memory sandbox (no Docker; timing is not asserted)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import pytest

from execloop.errors import ConfigError, SandboxStartError
from execloop.sandboxes.base import ExecResult, ExitReason, Manifest, Sandbox
from execloop.sandboxes.pool import PoolSet, SandboxPool
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.streaming import OnOutput

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self, *, start_delay: float = 0.01, fail: bool = False) -> None:
        self.start_delay = start_delay
        self.fail = fail
        self.starting = 0
        self.max_concurrent_starts = 0
        self.made: list[FakeSandbox] = []

    def factory(self, spec: SandboxSpec) -> Sandbox:
        sandbox = FakeSandbox(spec, self)
        self.made.append(sandbox)
        return sandbox


class FakeSandbox(Sandbox):
    def __init__(self, spec: SandboxSpec, recorder: Recorder) -> None:
        super().__init__(spec)
        self.recorder = recorder
        self.started = False
        self.warmed = False
        self.namespace: dict[str, str] = {}

    async def start(self) -> None:
        self.recorder.starting += 1
        self.recorder.max_concurrent_starts = max(
            self.recorder.max_concurrent_starts, self.recorder.starting
        )
        try:
            await anyio.sleep(self.recorder.start_delay)
            if self.recorder.fail:
                raise SandboxStartError("the fake backend refuses to start")
            self.started = True
        finally:
            self.recorder.starting -= 1

    async def close(self) -> None:
        self._closed = True

    async def warm(self) -> None:
        assert self.started
        self.warmed = True

    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        self._ensure_open()
        name, _, value = code.partition("=")
        if value:
            self.namespace[name] = value
        return ExecResult(
            exit_code=0,
            exit_reason=ExitReason.OK,
            stdout=self.namespace.get(code, ""),
            duration_s=0.0,
        )

    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        raise AssertionError("a pool only starts, hands out and closes sandboxes")

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        raise AssertionError("a pool only starts, hands out and closes sandboxes")

    async def download_tar(self, path: str) -> bytes:
        raise AssertionError("a pool only starts, hands out and closes sandboxes")

    async def manifest(self, path: str = ".", *, limit: int = 1000) -> Manifest:
        return Manifest(files=[], total_files=0, total_bytes=0)


SPEC = SandboxSpec()


async def _until(condition: object, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 (polling a counter)
            await anyio.sleep(0.005)


async def test_keeps_min_idle_warm_and_hands_out_started_sandboxes() -> None:
    recorder = Recorder()
    async with SandboxPool(SPEC, min_idle=2, max_size=4, factory=recorder.factory) as pool:
        with anyio.fail_after(5):
            await pool.wait_warm()
        assert pool.stats().idle == 2
        async with pool.acquire() as sandbox:
            assert isinstance(sandbox, FakeSandbox) and sandbox.started
            await _until(lambda: pool.stats().idle == 2)  # refilled while in use
    assert all(s.closed for s in recorder.made)


async def test_idle_sandboxes_are_warmed_and_one_started_for_a_caller_is_not() -> None:
    recorder = Recorder()
    # room for three: the second caller starts its own rather than wait for the refill
    async with SandboxPool(SPEC, min_idle=1, max_size=3, factory=recorder.factory) as pool:
        with anyio.fail_after(5):
            await pool.wait_warm()
        async with pool.acquire() as idle, pool.acquire() as started_for_us:
            assert isinstance(idle, FakeSandbox) and isinstance(started_for_us, FakeSandbox)
            assert (idle.warmed, started_for_us.warmed) == (True, False)


async def test_a_sandbox_is_never_handed_out_twice() -> None:
    recorder = Recorder()
    async with SandboxPool(SPEC, min_idle=1, max_size=2, factory=recorder.factory) as pool:
        async with pool.acquire() as first:
            await first.exec("secret=42")
        async with pool.acquire() as second:
            assert second is not first
            assert (await second.exec("secret")).stdout == ""
        await _until(lambda: first.closed)


async def test_back_pressure_when_full() -> None:
    recorder = Recorder()
    order: list[str] = []
    async with SandboxPool(SPEC, min_idle=0, max_size=2, factory=recorder.factory) as pool:
        release = anyio.Event()

        async def holder(name: str) -> None:
            async with pool.acquire():
                order.append(f"got {name}")
                await release.wait()
            order.append(f"released {name}")

        async def latecomer() -> None:
            async with pool.acquire():
                order.append("got late")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(holder, "a")
            tasks.start_soon(holder, "b")
            await _until(lambda: len(order) == 2)
            tasks.start_soon(latecomer)
            await anyio.sleep(0.1)
            assert order == ["got a", "got b"]  # the third waits: max_size reached
            release.set()
    assert order.index("got late") > order.index("released a")
    assert pool.stats().in_use == 0


async def test_starts_are_capped() -> None:
    recorder = Recorder(start_delay=0.05)
    async with (
        SandboxPool(SPEC, min_idle=0, max_size=6, max_starting=2, factory=recorder.factory) as pool,
        anyio.create_task_group() as tasks,
    ):
        for _ in range(6):

            async def use() -> None:
                async with pool.acquire():
                    await anyio.sleep(0.01)

            tasks.start_soon(use)
    assert recorder.max_concurrent_starts == 2
    assert len(recorder.made) == 6


async def test_start_failures_reach_the_caller_and_the_warmer_backs_off() -> None:
    recorder = Recorder(fail=True, start_delay=0)
    async with SandboxPool(SPEC, min_idle=1, max_size=2, factory=recorder.factory) as pool:
        with pytest.raises(SandboxStartError, match="refuses"):
            async with pool.acquire():
                pass
        await anyio.sleep(0.3)
        assert pool.stats().start_failures <= 3  # retried after a pause, not in a hot loop
    assert all(s.closed for s in recorder.made)


async def test_leaving_the_pool_closes_idle_and_starting_sandboxes() -> None:
    recorder = Recorder(start_delay=0.2)
    async with SandboxPool(SPEC, min_idle=3, max_size=3, factory=recorder.factory) as pool:
        await anyio.sleep(0.05)  # starts in flight
        assert pool.stats().starting >= 1
    assert recorder.made and all(s.closed for s in recorder.made)


async def test_pool_refuses_use_when_not_open_and_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="min_idle"):
        SandboxPool(SPEC, min_idle=5, max_size=2)
    pool = SandboxPool(SPEC, factory=Recorder().factory)
    with pytest.raises(Exception, match="not open"):
        async with pool.acquire():
            pass


async def test_pool_set_keys_pools_by_the_full_spec() -> None:
    async with PoolSet(min_idle=0, max_size=2) as pools:
        small, same, large = SandboxSpec(memory="256m"), SandboxSpec(memory="256m"), SandboxSpec()
        assert await pools.pool(small) is await pools.pool(same)
        assert await pools.pool(small) is not await pools.pool(large)


@pytest.mark.parametrize("delay", [0.0, 0.5])
async def test_a_refill_waits_for_the_grace_after_a_take_and_then_happens(delay: float) -> None:
    recorder = Recorder(start_delay=0)
    async with SandboxPool(
        SPEC, min_idle=1, max_size=3, refill_delay_s=delay, factory=recorder.factory
    ) as pool:
        await pool.wait_warm(settled=True)
        async with pool.acquire() as sandbox:
            await sandbox.exec("print(1)")
            for _ in range(20):  # the warmer gets every chance to run (no wall time passes)
                await anyio.lowlevel.checkpoint()
            refilled_at_once = len(recorder.made) == 2
            with anyio.fail_after(5):
                await _until(lambda: pool.stats().idle == 1)  # and after the grace, it does
    assert refilled_at_once is (delay == 0)
    assert all(s.closed for s in recorder.made)


def test_a_refill_delay_must_be_finite_and_not_negative() -> None:
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="refill_delay_s"):
            SandboxPool(SPEC, refill_delay_s=bad)
