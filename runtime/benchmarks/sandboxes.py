"""``execloop bench sandboxes``: every contender measured in one run, interleaved.

A round opens one session of every contender in turn (the order rotates each round, so no one
always goes first on a warm or a busy machine) and takes its whole life: cold start (open until
the first ``print(1+1)`` has answered), ``execs`` stateful execs, idle memory, teardown. Then
two-session throughput: two sessions of a contender run ``throughput_execs`` execs each at
once. Whether state is kept is measured (``x = 41`` then ``print(x + 1)``), not declared. A
contender that cannot be imported or fails is reported as unavailable with its reason, never
dropped; its sessions are closed and the run goes on.
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import psutil

from execloop.runtime.benchmarks.contenders import Contender
from execloop.runtime.benchmarks.context import BENCH_LABEL, BenchContext, ContenderSession
from execloop.runtime.benchmarks.measure import stats, timed

__all__ = ["Record", "Settings", "leftovers", "measure_all", "unavailable_reason"]

CODE, EXPECTED = "print(1+1)", "2"
Advance = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    rounds: int = 5
    warmup_rounds: int = 1
    execs: int = 20
    throughput_rounds: int = 3
    throughput_execs: int = 30


@dataclass
class Record:
    """What was measured of one contender (seconds; bytes)."""

    contender: Contender
    reason: str | None = None  # why it is unavailable
    keeps_state: bool | None = None
    cold: list[float] = field(default_factory=list)
    execs: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        c = self.contender
        row: dict[str, Any] = {
            "key": c.key,
            "name": c.name,
            "group": c.group,
            "isolation": c.isolation,
            "status": "unavailable" if self.reason else "ok",
            "note": c.note,
        }
        if self.reason:
            return {**row, "reason": self.reason}
        return {
            **row,
            "keeps_state": self.keeps_state,
            "cold_start_ms": stats(self.cold),
            "exec_ms": stats(self.execs),
            "teardown_ms": stats(self.teardown),
            "two_session_execs_per_s": statistics.median(self.rates) if self.rates else None,
            "idle_memory_mib": statistics.median(self.memory) / 2**20 if self.memory else None,
        }


def unavailable_reason(contender: Contender) -> str | None:
    """Why ``contender`` cannot run here before anything starts (a missing package)."""
    for module in contender.needs:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"not installed ({exc}); pip install 'execloop[bench]'"
        except Exception as exc:  # a package that refuses to import is as absent
            return f"does not import: {type(exc).__name__}: {exc}"
    return None


def _failure(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"failed: {type(exc).__name__}: {text}"


def _answer(output: str) -> None:
    if output.strip() != EXPECTED:
        raise RuntimeError(f"print(1+1) gave {output[-200:]!r}")


async def idle_memory(ctx: BenchContext, session: ContenderSession) -> int | None:
    """Memory held by an idle session: its containers as `docker stats` counts it (usage less
    inactive file cache), else its process tree's unique set size; None in-process."""
    if session.containers is not None:

        def read() -> int:
            total = 0
            for container in ctx.client.containers.list(filters=session.containers):
                memory = container.stats(stream=False, one_shot=True)["memory_stats"]
                counters = memory.get("stats", {})
                inactive = counters.get("total_inactive_file", counters.get("inactive_file", 0))
                total += int(memory.get("usage", 0)) - int(inactive)
            return total

        return await anyio.to_thread.run_sync(read)
    pid = session.pid() if session.pid is not None else None
    if pid is not None:

        def tree() -> int:
            root = psutil.Process(pid)
            total = 0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_full_info().uss
            return total

        with contextlib.suppress(psutil.Error):
            return await anyio.to_thread.run_sync(tree)
    return None


async def _lifecycle(ctx: BenchContext, record: Record, settings: Settings, keep: bool) -> None:
    start = time.perf_counter()
    session = await record.contender.open(ctx)
    try:
        _answer(await session.run(CODE))
        cold = time.perf_counter() - start
        if record.keeps_state is None:
            await session.run("x = 41")
            record.keeps_state = (await session.run("print(x + 1)")).strip() == "42"
        execs = []
        for _ in range(settings.execs):
            execs.append(await timed(lambda: session.run(CODE)))
        memory = await idle_memory(ctx, session)
    except BaseException:
        with contextlib.suppress(Exception):
            await session.close()
        raise
    teardown = await timed(session.close)
    if keep:
        record.cold.append(cold)
        record.execs += execs
        record.teardown.append(teardown)
        if memory is not None:
            record.memory.append(memory)


async def _pair_rate(ctx: BenchContext, record: Record, settings: Settings) -> float:
    sessions: list[ContenderSession] = []
    try:
        for _ in range(2):
            sessions.append(await record.contender.open(ctx))
            _answer(await sessions[-1].run(CODE))

        async def drive(session: ContenderSession) -> None:
            for _ in range(settings.throughput_execs):
                await session.run(CODE)

        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for session in sessions:
                group.start_soon(drive, session)
        return 2 * settings.throughput_execs / (time.perf_counter() - start)
    finally:

        async def close(session: ContenderSession) -> None:
            with contextlib.suppress(Exception):
                await session.close()

        async with anyio.create_task_group() as group:  # at once: some peers take 10 s each
            for session in sessions:
                group.start_soon(close, session)


async def measure_all(
    ctx: BenchContext, contenders: Sequence[Contender], settings: Settings, advance: Advance
) -> list[Record]:
    """Every contender, round by round in rotating order; ``advance`` is told each step."""
    records = [Record(c, reason=unavailable_reason(c)) for c in contenders]
    lifecycles = settings.warmup_rounds + settings.rounds
    for round_ in range(lifecycles):
        turn = round_ % len(records)
        for record in records[turn:] + records[:turn]:
            advance(f"round {round_ + 1}/{lifecycles}: {record.contender.name}")
            if record.reason is None:
                try:
                    keep = round_ >= settings.warmup_rounds
                    await _lifecycle(ctx, record, settings, keep)
                except Exception as exc:
                    record.reason = _failure(exc)
    for round_ in range(settings.throughput_rounds):
        turn = round_ % len(records)
        for record in records[turn:] + records[:turn]:
            advance(
                f"two sessions {round_ + 1}/{settings.throughput_rounds}: {record.contender.name}"
            )
            if record.reason is None:
                try:
                    record.rates.append(await _pair_rate(ctx, record, settings))
                except Exception as exc:
                    record.reason = _failure(exc)
    return records


def leftovers(ctx: BenchContext, *, remove: bool) -> list[str]:
    """This run's containers still there (by label, and autogen's by name); removed with
    ``remove``. A clean run leaves none."""
    deadline = time.monotonic() + 15  # autogen's containers are auto-removed after stop()
    while True:
        found = ctx.client.containers.list(
            all=True, filters={"label": f"{BENCH_LABEL}={ctx.run_id}"}
        )
        found += ctx.client.containers.list(all=True, filters={"name": ctx.name_prefix})
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = sorted({container.name for container in found})
    if remove:
        for container in found:
            with contextlib.suppress(Exception):
                container.remove(force=True)
    return names
