"""Latency benchmark of the docker sandbox against bare Docker, measured side by side in one run.

    python bench/sandbox.py [--quick] [--json FILE] [--plot FILE.png]

The machine is small and noisy, so every target is a ratio of two numbers taken in the same run,
and the compared steps are interleaved round by round (rotating their order) rather than run
one block after the other. Round 0 of every measurement is a warm-up and is not recorded.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import docker.errors
from backends import backend_targets, local_execs, pool_acquires  # bench/backends.py
from jupyter import jupyter_execs, jupyter_targets
from rich.console import Console
from rich.table import Table

from execloop.images import python_image_tag
from execloop.runtime.benchmarks.floor import (
    FLOOR_SOCKET,
    FLOOR_STDIO,
    FloorRepl,
    floor_pair,
    start_floor,
)
from execloop.runtime.benchmarks.measure import machine, stats, thread, timed
from execloop.sandboxes import DockerSandbox, SandboxSpec
from execloop.sandboxes.docker_backend import default_client

CODE = "print(1+1)"
# This run's reference containers, removed at its end regardless; only this run's: another run
# beside it (a shared machine) keeps its own (a fixed value had one run remove the other's floor)
BENCH_RUN = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
BENCH_LABELS = {"org.execloop.bench": BENCH_RUN}
BENCH_FILTER = {"label": f"org.execloop.bench={BENCH_RUN}"}
ONESHOT = {"remove": True, "labels": BENCH_LABELS}  # docker run --rm IMAGE true
SLEEPER = {"detach": True, "network_mode": "none", "init": True, "labels": BENCH_LABELS}
START, CLOSE = "session start()", "session close()"
RUN, RUN_NONE = "docker run --rm true", "docker run --rm --network none true"
EXEC, DEXEC_PY, DEXEC_TRUE = "sandbox.exec(print)", "docker exec python3 -c", "docker exec true"
SECTIONS = ("start", "exec", "jupyter", "local", "pool", "throughput")
console = Console()


async def cold_starts(client: Any, image: str, reps: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}

    async def session() -> None:
        sandbox = DockerSandbox(SandboxSpec(), client=client)
        try:
            started = await timed(sandbox.start)
        finally:
            closed = await timed(sandbox.close)
        samples.setdefault(START, []).append(started)
        samples.setdefault(CLOSE, []).append(closed)

    async def bare(name: str, **network: str) -> None:
        run = thread(client.containers.run, image, ["true"], **ONESHOT, **network)
        samples.setdefault(name, []).append(await timed(run))

    none = functools.partial(bare, RUN_NONE, network_mode="none")
    steps: list[Callable[[], Awaitable[None]]] = [session, functools.partial(bare, RUN), none]
    for round_ in range(reps + 1):
        for step in steps[round_ % 3 :] + steps[: round_ % 3]:
            await step()
        if round_ == 0:  # warm-up round: the first start also reaps orphans and warms caches
            samples.clear()
    return samples


async def execs(client: Any, image: str, reps: int, per_round: int) -> dict[str, list[float]]:
    """One session's exec beside the floors (and docker exec), interleaved in rotating order."""
    samples: dict[str, list[float]] = {EXEC: [], FLOOR_STDIO: [], FLOOR_SOCKET: []}
    samples.update({DEXEC_PY: [], DEXEC_TRUE: []})
    reference = await thread(client.containers.run, image, ["sleep", "infinity"], **SLEEPER)()
    python, true = (thread(reference.exec_run, cmd) for cmd in (["python3", "-c", CODE], ["true"]))
    sandbox = DockerSandbox(SandboxSpec(), client=client)
    floors: list[FloorRepl] = []
    try:
        await sandbox.start()
        for via in ("stdio", "socket"):
            floors.append(await start_floor(client, image, BENCH_LABELS, via=via))
        warm = await sandbox.exec(CODE), await python()
        if warm[0].stdout != "2\n" or warm[1].output != b"2\n":
            raise RuntimeError(f"unexpected warm-up output: {warm!r}")
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (EXEC, functools.partial(sandbox.exec, CODE)),
            (FLOOR_STDIO, functools.partial(floors[0].exec, CODE)),
            (FLOOR_SOCKET, functools.partial(floors[1].exec, CODE)),
        ]
        for round_ in range(reps):
            samples[DEXEC_PY].append(await timed(python))
            samples[DEXEC_TRUE].append(await timed(true))
            for name, step in steps[round_ % 3 :] + steps[: round_ % 3]:
                for _ in range(per_round):
                    samples[name].append(await timed(step))
    finally:
        await sandbox.close()
        for floor in floors:
            await floor.aclose()
        await thread(reference.remove, force=True)()
    return samples


async def throughput(client: Any, image: str, k: int, rounds: int) -> dict[str, float]:
    """Execs/s of one session, two sessions at once, and two floors (stdio, socket) at once,
    round by round in rotating order."""

    async def run(sandbox: DockerSandbox, count: int) -> None:
        for _ in range(count):
            result = await sandbox.exec(CODE)
            assert result.ok, result

    async def pair_rate() -> float:
        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for sandbox in pair:
                group.start_soon(run, sandbox, k)
        return 2 * k / (time.perf_counter() - start)

    async def alone_rate() -> float:
        return k / await timed(functools.partial(run, pair[0], k))

    pair = [DockerSandbox(SandboxSpec(), client=client) for _ in range(2)]
    floors: dict[str, list[FloorRepl]] = {"stdio": [], "socket": []}
    rates: dict[str, list[float]] = {}
    try:
        async with anyio.create_task_group() as group:
            for sandbox in pair:
                group.start_soon(sandbox.start)
        for via, started in floors.items():
            for _ in range(2):
                started.append(await start_floor(client, image, BENCH_LABELS, via=via))
        for sandbox in pair:
            await run(sandbox, 10)  # warm-up
        steps: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            ("one_session_per_s", alone_rate),
            ("two_sessions_per_s", pair_rate),
            ("two_stdio_floors_per_s", functools.partial(floor_pair, floors["stdio"], CODE, k)),
            ("two_socket_floors_per_s", functools.partial(floor_pair, floors["socket"], CODE, k)),
        ]
        for round_ in range(rounds):
            for name, step in steps[round_ % 4 :] + steps[: round_ % 4]:
                rates.setdefault(name, []).append(await step())
    finally:
        for sandbox in pair:
            await sandbox.close()
        for started in floors.values():
            for floor in started:
                await floor.aclose()
    result: dict[str, float] = {"execs_per_round": k, "rounds": rounds}
    result.update({name: statistics.median(values) for name, values in rates.items()})
    result["scaling"] = result["two_sessions_per_s"] / result["one_session_per_s"]
    result["vs_stdio_floor"] = result["two_sessions_per_s"] / result["two_stdio_floors_per_s"]
    result["vs_socket_floor"] = result["two_sessions_per_s"] / result["two_socket_floors_per_s"]
    return result


def targets(latency: dict[str, dict[str, float]], tp: dict[str, float]) -> list[dict[str, Any]]:
    p50 = {name: value["p50_ms"] for name, value in latency.items()}
    rows: list[tuple[str, float, str, float]] = []
    if EXEC in p50:
        rows += [
            ("exec p50 / stdio floor p50", p50[EXEC] / p50[FLOOR_STDIO], "<=", 1.1),
            ("exec p50 speed-up vs docker exec python3 -c", p50[DEXEC_PY] / p50[EXEC], ">=", 50),
        ]
    if tp:
        rows.append(("2-session execs/s / 2 stdio floors'", tp["vs_stdio_floor"], ">=", 0.9))
    if START in p50:
        rows += [
            ("cold start p50 / docker run (default network)", p50[START] / p50[RUN], "<=", 1.3),
            ("cold start p50 / docker run --network none", p50[START] / p50[RUN_NONE], "<=", 1.3),
            ("teardown close() p50, ms", p50[CLOSE], "<", 100),
        ]
    rows += jupyter_targets(p50)
    rows += backend_targets(p50)
    ops = {">=": operator.ge, "<=": operator.le, "<": operator.lt}
    return [
        {"target": name, "measured": value, "goal": f"{op} {goal:g}", "pass": ops[op](value, goal)}
        for name, value, op, goal in rows
    ]


def table(title: str, columns: tuple[str, ...], rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index else "left")
    for row in rows:
        table.add_row(*row)
    return table


def report(result: dict[str, Any]) -> None:
    latency = [
        (name, str(v["n"]), f"{v['p50_ms']:.2f}", f"{v['p95_ms']:.2f}")
        for name, v in result["latency_ms"].items()
    ]
    console.print(table("latency (ms)", ("measurement", "n", "p50", "p95"), latency))
    verdict = {True: "[green]PASS", False: "[red]FAIL"}
    checks = [
        (t["target"], f"{t['measured']:.2f}", t["goal"], verdict[t["pass"]])
        for t in result["targets"]
    ]
    console.print(table("targets", ("target", "measured", "goal", "verdict"), checks))
    if EXEC in result["latency_ms"]:
        p50 = {name: value["p50_ms"] for name, value in result["latency_ms"].items()}
        ratio = p50[EXEC] / p50[FLOOR_SOCKET]
        console.print(f"exec p50 / socket floor p50 (execloop's own transport): x{ratio:.2f}")
    tp = result["throughput"]
    if not tp:
        return
    rows = [
        ("1 session alone", f"{tp['one_session_per_s']:.0f}"),
        ("2 concurrent sessions, total", f"{tp['two_sessions_per_s']:.0f}"),
        ("2 stdio floors at once, total", f"{tp['two_stdio_floors_per_s']:.0f}"),
        ("2 socket floors at once, total", f"{tp['two_socket_floors_per_s']:.0f}"),
        ("scaling (2 sessions / 1 session)", f"x{tp['scaling']:.2f}"),
        ("2 sessions / 2 stdio floors", f"x{tp['vs_stdio_floor']:.2f}"),
        ("2 sessions / 2 socket floors", f"x{tp['vs_socket_floor']:.2f}"),
    ]
    label = f"{tp['execs_per_round']} execs per session, median of {tp['rounds']}"
    console.print(table("throughput (execs/s)", (label, "value"), rows))


def plot(latency: dict[str, dict[str, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        console.print(f"[yellow]matplotlib is missing (pip install matplotlib): no plot {path}")
        return
    names = list(latency)
    p50, p95 = ([latency[n][key] for n in names] for key in ("p50_ms", "p95_ms"))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = ["#dd8452" if name.startswith("docker") else "#4c72b0" for name in names]
    whiskers = [[0.0] * len(names), [top - mid for mid, top in zip(p50, p95, strict=True)]]
    ax.bar(range(len(names)), p50, yerr=whiskers, capsize=5, color=colors)
    for index, (middle, top) in enumerate(zip(p50, p95, strict=True)):  # p50 above the whisker
        ax.text(index, top * 1.08, f"{middle:.1f}", ha="center", va="bottom", fontsize=9)
    legend = [("#4c72b0", "execloop docker sandbox"), ("#dd8452", "bare Docker reference")]
    ax.legend(handles=[Patch(color=color, label=label) for color, label in legend])
    ax.set_yscale("log")
    ax.set_ylim(top=max(p95) * 2)  # room for the labels above the whiskers
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=9)
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_title("execloop docker sandbox vs bare Docker: p50 latency (label), p95 whisker")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    console.print(f"plot written to {path}")


async def main(args: argparse.Namespace) -> int:
    reps = 8 if args.quick else 30
    per_round, k, rounds = (5, 40, 3) if args.quick else (7, 150, 5)
    client = await anyio.to_thread.run_sync(default_client)
    image = python_image_tag()
    try:
        await thread(client.images.get, image)()
    except docker.errors.ImageNotFound:
        console.print(f"[red]image {image} is missing: `python -m execloop.images build`[/]")
        return 2
    host = await anyio.to_thread.run_sync(machine, client)
    host["load_before"] = os.getloadavg()  # a shared machine: the ratios hold, not the times
    load = "load average {:.1f} {:.1f} {:.1f}".format(*host["load_before"])
    console.print(f"image {image}, docker {host['docker_version']}, {host['cores']} cores, {load}")
    samples: dict[str, list[float]] = {}
    tp: dict[str, float] = {}
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    try:
        if "start" in only:
            console.print(f"cold start: {reps} rounds of session / docker run / run --network none")
            samples.update(await cold_starts(client, image, reps))
        if "exec" in only:
            console.print(f"exec: {reps} rounds of 2 docker execs, {per_round} execs per floor")
            samples.update(await execs(client, image, reps, per_round))
        if "jupyter" in only:
            pairs = 2 * reps * per_round  # a gap of 5% stands out of this machine's noise
            console.print(f"jupyter: {pairs} alternating pairs of execs, sandbox and raw kernel")
            samples.update(await jupyter_execs(client, image, pairs, BENCH_LABELS))
        if "local" in only:
            console.print(f"local: {reps} rounds of python3 -c, a one-shot and {per_round} execs")
            samples.update(await local_execs(reps, per_round))
        if "pool" in only:
            runs = 2 * reps  # each after a pause: the spread of 30 was wider than a target's 10%
            console.print(f"pool: {runs} acquires + exec beside {runs} floor execs, warm pool")
            samples.update(await pool_acquires(client, image, runs, BENCH_LABELS))
        if "throughput" in only:
            console.print(f"throughput: {rounds} rounds of {k} execs: 1 session, 2, 2 floors")
            tp = await throughput(client, image, k, rounds)
    finally:
        leftovers = await thread(client.containers.list, all=True, filters=BENCH_FILTER)()
        for container in leftovers:
            await thread(container.remove, force=True)()
    host["load_after"] = os.getloadavg()
    console.print("load average at the end {:.1f} {:.1f} {:.1f}".format(*host["load_after"]))
    latency = {name: stats(values) for name, values in samples.items()}
    result = {
        "machine": host,
        "image": image,
        "quick": args.quick,
        "latency_ms": latency,
        "targets": targets(latency, tp),
        "throughput": tp,
        "raw_s": samples,
    }
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        console.print(f"numbers written to {args.json}")
    if args.plot:
        plot(latency, args.plot)
    return 0 if all(row["pass"] for row in result["targets"]) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 8 repetitions instead of 30")
    parser.add_argument("--json", type=Path, help="write every number (and the machine) here")
    parser.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)}")
    parser.add_argument("--plot", type=Path, help="bar chart of p50 (p95 whiskers), log scale")
    sys.exit(anyio.run(main, parser.parse_args()))
