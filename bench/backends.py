"""Bench rows for the local backend and the warm pools (imported by bench/sandbox.py)."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from execloop.runtime.benchmarks.floor import FloorRepl, start_floor
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.local_backend import LocalSandbox
from execloop.sandboxes.pool import SandboxPool

LOCAL_EXEC, PYTHON_C = "LocalSandbox.exec(print)", "python3 -c subprocess"
LOCAL_ONESHOT = "LocalSandbox start+exec+close"
POOL_ACQUIRE = "SandboxPool.acquire() (docker, warm)"
POOL_FIRST = "pool acquire + first exec (docker, warm)"
POOL_SECOND = "pool: the same sandbox's second exec"
POOL_FLOOR = "pool: stdio floor's exec after the same pause"
CODE = "print(1+1)"


async def _timed(step: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await step()
    return time.perf_counter() - start


def _python_c() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, check=True)
    assert done.stdout == b"2\n"


async def local_execs(reps: int, per_round: int) -> dict[str, list[float]]:
    """Stateful local exec and a one-shot local run, interleaved with plain `python3 -c`."""
    samples: dict[str, list[float]] = {LOCAL_EXEC: [], PYTHON_C: [], LOCAL_ONESHOT: []}

    async def oneshot() -> None:
        async with LocalSandbox(SandboxSpec(backend="local")) as sandbox:
            assert (await sandbox.exec(CODE)).stdout == "2\n"

    async with LocalSandbox(SandboxSpec(backend="local")) as sandbox:
        assert (await sandbox.exec(CODE)).stdout == "2\n"  # warm-up
        for _ in range(reps):
            samples[PYTHON_C].append(
                await _timed(functools.partial(anyio.to_thread.run_sync, _python_c))
            )
            samples[LOCAL_ONESHOT].append(await _timed(oneshot))
            for _ in range(per_round):
                samples[LOCAL_EXEC].append(await _timed(functools.partial(sandbox.exec, CODE)))
    return samples


async def pool_acquires(
    client: Any, image: str, reps: int, labels: dict[str, str]
) -> dict[str, list[float]]:
    """From a warm docker pool: the acquire alone, and acquire until the first exec's result;
    beside them, the second exec of the same sandbox, and the stdio floor's exec measured the
    same way (each timed step follows the same pause: the previous round's sandbox destroyed
    in the background and a fresh one started, so CPU caches are as cold for the floor).
    Rounds alternate between the pool and the floor; a pool round times its acquire too."""
    acquires: list[float] = []
    firsts: list[float] = []
    seconds: list[float] = []
    floors: list[float] = []
    floor: FloorRepl = await start_floor(client, image, labels, via="stdio")
    try:
        async with SandboxPool(SandboxSpec(), min_idle=2, max_size=4) as pool:
            for round_ in range(2 * reps + 2):  # the first round of each kind warms up
                await pool.wait_warm(settled=True)  # no close or start of a past round in flight
                if round_ % 2:
                    floors.append(await _timed(functools.partial(floor.exec, CODE)))
                lease = pool.acquire()
                start = time.perf_counter()
                sandbox = await lease.__aenter__()
                acquired = time.perf_counter()
                if not round_ % 2:
                    result = await sandbox.exec(CODE)
                    firsts.append(time.perf_counter() - start)
                    acquires.append(acquired - start)
                    assert result.stdout == "2\n", result
                    seconds.append(await _timed(functools.partial(sandbox.exec, CODE)))
                await lease.__aexit__(None, None, None)
    finally:
        await floor.aclose()
    return {
        POOL_ACQUIRE: acquires[1:],
        POOL_FIRST: firsts[1:],
        POOL_SECOND: seconds[1:],
        POOL_FLOOR: floors[1:],
    }


def backend_targets(p50: dict[str, float]) -> list[tuple[str, float, str, float]]:
    rows = []
    if LOCAL_EXEC in p50:
        rows.append(("local exec p50 / python3 -c p50", p50[LOCAL_EXEC] / p50[PYTHON_C], "<=", 1.5))
    if POOL_ACQUIRE in p50:
        rows.append(("pool acquire p50, ms", p50[POOL_ACQUIRE], "<", 5))
        rows.append(("pool acquire-to-first-result p50, ms", p50[POOL_FIRST], "<=", 1))
        vs_floor = p50[POOL_FIRST] / p50[POOL_FLOOR]
        rows.append(("pool acquire-to-first-result / floor after a pause", vs_floor, "<=", 1.1))
    return rows
