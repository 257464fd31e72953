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
import platform
import queue
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import docker.errors
from backends import backend_targets, local_execs, pool_acquires  # bench/backends.py
from rich.console import Console
from rich.table import Table

from execloop.images import python_image_tag
from execloop.sandboxes import DockerSandbox, SandboxSpec
from execloop.sandboxes.docker_backend import default_client

CODE = "print(1+1)"
BENCH_LABELS = {"org.execloop.bench": "1"}  # reference containers; removed at the end regardless
BENCH_FILTER = {"label": "org.execloop.bench=1"}
ONESHOT = {"remove": True, "labels": BENCH_LABELS}  # docker run --rm IMAGE true
SLEEPER = {"detach": True, "network_mode": "none", "init": True, "labels": BENCH_LABELS}
START, CLOSE = "session start()", "session close()"
RUN, RUN_NONE = "docker run --rm true", "docker run --rm --network none true"
EXEC, DEXEC_PY, DEXEC_TRUE = "sandbox.exec(print)", "docker exec python3 -c", "docker exec true"
console = Console()


def thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[Any]]:
    """An awaitable factory running a blocking docker SDK call in a worker thread."""
    return lambda: anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))


async def timed(step: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await step()
    return time.perf_counter() - start


def stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[-1] if len(ms) > 1 else ms[0]
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p95_ms": p95}


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
    samples: dict[str, list[float]] = {EXEC: [], DEXEC_PY: [], DEXEC_TRUE: []}
    reference = await thread(client.containers.run, image, ["sleep", "infinity"], **SLEEPER)()
    python, true = (thread(reference.exec_run, cmd) for cmd in (["python3", "-c", CODE], ["true"]))
    sandbox = DockerSandbox(SandboxSpec(), client=client)
    try:
        await sandbox.start()
        warm = await sandbox.exec(CODE), await python()
        if warm[0].stdout != "2\n" or warm[1].output != b"2\n":
            raise RuntimeError(f"unexpected warm-up output: {warm!r}")
        for _ in range(reps):
            samples[DEXEC_PY].append(await timed(python))
            samples[DEXEC_TRUE].append(await timed(true))
            for _ in range(per_round):
                samples[EXEC].append(await timed(functools.partial(sandbox.exec, CODE)))
    finally:
        await sandbox.close()
        await thread(reference.remove, force=True)()
    return samples


async def throughput(client: Any, k: int, rounds: int) -> dict[str, float]:
    async def run(sandbox: DockerSandbox, count: int) -> None:
        for _ in range(count):
            result = await sandbox.exec(CODE)
            assert result.ok, result

    pair = [DockerSandbox(SandboxSpec(), client=client) for _ in range(2)]
    alone: list[float] = []
    together: list[float] = []
    try:
        async with anyio.create_task_group() as group:
            for sandbox in pair:
                group.start_soon(sandbox.start)
        for sandbox in pair:
            await run(sandbox, 10)  # warm-up
        for _ in range(rounds):
            alone.append(k / await timed(functools.partial(run, pair[0], k)))
            start = time.perf_counter()
            async with anyio.create_task_group() as group:
                for sandbox in pair:
                    group.start_soon(run, sandbox, k)
            together.append(2 * k / (time.perf_counter() - start))
    finally:
        for sandbox in pair:
            await sandbox.close()
    one, two = statistics.median(alone), statistics.median(together)
    return {
        "execs_per_round": k,
        "rounds": rounds,
        "one_session_per_s": one,
        "two_sessions_per_s": two,
        "scaling": two / one,
    }


# -- jupyter: JupyterSandbox (docker placement) against a raw jupyter_client kernel ----------
JUPYTER_EXEC, RAW_KERNEL_EXEC = "JupyterSandbox.exec(print)", "raw kernel client execute"
RAW_KERNEL_PYTHON = "/opt/execloop/venv/bin/python"


async def raw_kernel_run(kc: Any, code: str) -> str:
    """Execute ``code`` through a plain AsyncKernelClient: iopub until idle, then the reply."""
    msg_id = kc.execute(code, store_history=False, allow_stdin=False)
    out = ""
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while (await kc.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != msg_id:
        pass
    return out


def raw_kernel_files(folder: Path) -> dict[str, Any]:
    """Both connection files: the host's (ipc sockets in ``folder``), the kernel's (its mount)."""
    from jupyter_client.connect import write_connection_file

    folder.mkdir(mode=0o700)
    _, info = write_connection_file(
        str(folder / "host.json"),
        ip=str(folder / "kernel"),
        transport="ipc",
        key=os.urandom(16).hex().encode(),
    )
    (folder / "kernel.json").write_text(json.dumps({**info, "ip": "/run/execloop/kernel"}))
    for path in (folder, folder / "kernel.json"):
        os.chown(path, 1000, 1000)
    return dict(info)


async def raw_kernel(client: Any, image: str, folder: Path) -> tuple[Any, Any]:
    """A kernel started the simple way: the image's ipykernel on an ipc connection file in a
    mounted directory, --network none, uid 1000; the client reads the host-side copy."""
    from jupyter_client.asynchronous.client import AsyncKernelClient

    info = raw_kernel_files(folder)
    command = [RAW_KERNEL_PYTHON, "-m", "ipykernel_launcher", "-f", "/run/execloop/kernel.json"]
    mount = {str(folder): {"bind": "/run/execloop", "mode": "rw"}}
    container = await thread(
        client.containers.run, image, command, volumes=mount, user="1000:1000", **SLEEPER
    )()
    kc = AsyncKernelClient()
    kc.load_connection_info(info)
    kc.start_channels(hb=False)
    with anyio.fail_after(60):  # kernel_info until it answers, then until iopub delivers
        while not await raw_kernel_answers(kc):
            pass
    return container, kc


async def raw_kernel_answers(kc: Any) -> bool:
    msg_id = kc.kernel_info()
    try:
        while (await kc.get_shell_msg(timeout=1))["parent_header"].get("msg_id") != msg_id:
            pass
        while True:
            msg = await kc.get_iopub_msg(timeout=1)
            if msg["msg_type"] == "iopub_welcome" or msg["parent_header"].get("msg_id") == msg_id:
                return True
    except queue.Empty:
        return False


async def jupyter_execs(
    client: Any, image: str, reps: int, per_round: int
) -> dict[str, list[float]]:
    """``print(1+1)`` through JupyterSandbox and through the raw kernel, interleaved."""
    import tempfile

    from execloop.sandboxes.jupyter_backend import JupyterSandbox

    samples: dict[str, list[float]] = {JUPYTER_EXEC: [], RAW_KERNEL_EXEC: []}
    sandbox = JupyterSandbox(SandboxSpec(backend="jupyter", placement="docker"))
    with tempfile.TemporaryDirectory(prefix="execloop-bench-") as scratch:
        container, kc = await raw_kernel(client, image, Path(scratch) / "kernel")
        try:
            await sandbox.start()
            warm = await sandbox.exec(CODE), await raw_kernel_run(kc, CODE)
            if warm[0].stdout != "2\n" or warm[1] != "2\n":
                raise RuntimeError(f"unexpected warm-up output: {warm!r}")
            steps = [
                (JUPYTER_EXEC, functools.partial(sandbox.exec, CODE)),
                (RAW_KERNEL_EXEC, functools.partial(raw_kernel_run, kc, CODE)),
            ]
            for round_ in range(reps):
                for name, step in steps[round_ % 2 :] + steps[: round_ % 2]:
                    for _ in range(per_round):
                        samples[name].append(await timed(step))
        finally:
            kc.stop_channels()
            await sandbox.close()
            await thread(container.remove, force=True)()
    return samples


def jupyter_targets(p50: dict[str, float]) -> list[tuple[str, float, str, float]]:
    return [
        (
            "jupyter exec p50 / raw kernel exec p50",
            p50[JUPYTER_EXEC] / p50[RAW_KERNEL_EXEC],
            "<=",
            1.2,
        )
    ]


def machine(client: Any) -> dict[str, Any]:
    version, info = client.version(), client.info()
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker_version": version.get("Version"),
        "docker_api": version.get("ApiVersion"),
        "cgroup": info.get("CgroupVersion"),
        "docker_cpus": info.get("NCPU"),
    }


def targets(latency: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    p50 = {name: value["p50_ms"] for name, value in latency.items()}
    rows = [
        ("exec p50 speed-up vs docker exec python3 -c", p50[DEXEC_PY] / p50[EXEC], ">=", 50),
        ("cold start p50 / docker run (default network)", p50[START] / p50[RUN], "<=", 1.3),
        ("cold start p50 / docker run --network none", p50[START] / p50[RUN_NONE], "<=", 1.3),
        ("teardown close() p50, ms", p50[CLOSE], "<", 100),
    ]
    if JUPYTER_EXEC in p50:
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
    console.print("(sandboxes always run with --network none: the like-for-like ratio is the 2nd)")
    tp = result["throughput"]
    rows = [
        ("1 session alone", f"{tp['one_session_per_s']:.0f}"),
        ("2 concurrent sessions, total", f"{tp['two_sessions_per_s']:.0f}"),
        ("scaling (2 sessions / 1 session)", f"x{tp['scaling']:.2f}"),
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
    console.print(f"image {image}, docker {host['docker_version']}, {host['cores']} cores")
    samples: dict[str, list[float]] = {}
    try:
        console.print(f"cold start: {reps} rounds of session / docker run / run --network none")
        samples.update(await cold_starts(client, image, reps))
        console.print(f"exec: {reps} rounds of 2 docker execs and {per_round} session execs")
        samples.update(await execs(client, image, reps, per_round))
        console.print(f"jupyter: {reps} rounds of {per_round} execs, sandbox and raw kernel")
        samples.update(await jupyter_execs(client, image, reps, per_round))
        console.print(f"local: {reps} rounds of python3 -c, a one-shot and {per_round} execs")
        samples.update(await local_execs(reps, per_round))
        console.print(f"pool: {reps} acquires from a warm docker pool")
        samples.update(await pool_acquires(reps))
        console.print(f"throughput: {rounds} rounds of {k} execs, 1 session then 2 at once")
        tp = await throughput(client, k, rounds)
    finally:
        leftovers = await thread(client.containers.list, all=True, filters=BENCH_FILTER)()
        for container in leftovers:
            await thread(container.remove, force=True)()
    latency = {name: stats(values) for name, values in samples.items()}
    result = {
        "machine": host,
        "image": image,
        "quick": args.quick,
        "latency_ms": latency,
        "targets": targets(latency),
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
    parser.add_argument("--plot", type=Path, help="bar chart of p50 (p95 whiskers), log scale")
    sys.exit(anyio.run(main, parser.parse_args()))
