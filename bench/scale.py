"""100 sub-agents on one machine: wall time, speedup over serial, Critical Steps (issue 14).

    python bench/scale.py [--tasks 100] [--latency 1.0] [--backend local|docker]
                          [--concurrency 100] [--serial-sample 5] [--json FILE]

Every task runs through the real broker (SQLite store, sandbox starts, checks, re-verification
in a fresh sandbox) with a latency-bound scripted model: each model call sleeps ``--latency``
seconds, as a remote LLM would, and then answers a script that writes ``result.json``. Outputs
come from a scripted model and say so (``Result.scripted``).

Serial time is measured, not assumed: ``--serial-sample`` tasks are run one at a time by a
broker with ``max_concurrency=1``, and their mean is multiplied by ``--tasks`` (``--serial-sample
0`` runs all of them serially, which takes minutes). Speedup = serial / parallel wall time.
Critical Steps (the report's measure: orchestration steps + the slowest sub-agent's steps) and the
critical path by the clock (the chain of tasks each waiting for the one before) are printed so a
fan-out that quietly runs one at a time is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from execloop.runtime.broker import Broker, summarize_run
from execloop.runtime.models.base import ModelRequest
from execloop.runtime.report import critical_path, critical_steps
from execloop.runtime.task import Budget, Task, TaskStatus
from execloop.runtime.tokens import load_tokenizer
from execloop.sandboxes import SandboxSpec
from execloop.testing import FunctionModel

SCRIPT = "import json\njson.dump({'rows': 3}, open('result.json', 'w'))\nprint('done')\n"


def latency_bound_model(latency_s: float) -> FunctionModel:
    """A model that takes ``latency_s`` per call (awaited, as a network call is) and answers."""

    async def reply(request: ModelRequest, number: int) -> str:
        await anyio.sleep(latency_s)
        return SCRIPT

    return FunctionModel(reply, name=f"latency-{latency_s:g}s")


def make_tasks(count: int, backend: str, prefix: str) -> list[Task]:
    spec = SandboxSpec(backend=backend)  # type: ignore[arg-type]
    return [
        Task(id=f"{prefix}-{i:03d}", goal="write result.json", sandbox=spec, budget=Budget())
        for i in range(count)
    ]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


async def run_batch(
    tasks: list[Task], *, db: Path, latency_s: float, concurrency: int, **broker: Any
) -> dict[str, Any]:
    began = time.monotonic()
    async with Broker(
        db=db,
        model=lambda task: latency_bound_model(latency_s),
        max_concurrency=concurrency,
        **broker,
    ) as running:
        results = await running.map(tasks)
        run_id = running.run_id
        store = running.store
        wall = time.monotonic() - began
        summary = summarize_run(store, run_id)
    passed = sum(r.status is TaskStatus.PASSED for r in results)
    stages = critical_steps(summary)
    steps = sum(
        orchestration + (slow.agent_steps if slow else 0) for _, orchestration, slow in stages
    )
    chain = critical_path(summary.tasks)
    return {
        "tasks": len(tasks),
        "passed": passed,
        "scripted": all(r.scripted for r in results),
        "wall_s": wall,
        "task_s_mean": _mean([r.timings.total_s for r in results]),
        # where a task's time went (means): a serializing step shows up as one of these growing
        "model_s_mean": _mean([r.timings.model_s for r in results]),
        "sandbox_s_mean": _mean([r.timings.sandbox_s for r in results]),
        "checks_s_mean": _mean([r.timings.checks_s for r in results]),
        "critical_steps": steps,
        "critical_path_tasks": len(chain),
        "errors": sorted({r.error for r in results if r.error})[:3],
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    # the tokenizer loads once per process (a broker does it on entering): both batches
    # below start with it loaded, so neither pays it
    await anyio.to_thread.run_sync(load_tokenizer)
    with tempfile.TemporaryDirectory(prefix="execloop-scale-") as tmp:
        folder = Path(tmp)
        extra: dict[str, Any] = {}
        if args.max_live is not None:
            extra["max_live_sandboxes"] = args.max_live
        if args.warm:
            extra["warm_sandboxes"] = args.warm
        if args.max_starting is not None:
            extra["max_starting_sandboxes"] = args.max_starting or None
        parallel = await run_batch(
            make_tasks(args.tasks, args.backend, "par"),
            db=folder / "parallel.db",
            latency_s=args.latency,
            concurrency=args.concurrency,
            **extra,
        )
        sample = args.serial_sample or args.tasks
        serial = await run_batch(
            make_tasks(sample, args.backend, "ser"),
            db=folder / "serial.db",
            latency_s=args.latency,
            concurrency=1,
        )
    serial_total = serial["wall_s"] / sample * args.tasks
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            # other work on the machine competes for the same cores: say how much there was
            "load_average_1m": os.getloadavg()[0],
        },
        "backend": args.backend,
        "latency_s": args.latency,
        "concurrency": args.concurrency,
        "parallel": parallel,
        "serial_sample": serial,
        "serial_s_for_all": serial_total,
        "speedup": serial_total / parallel["wall_s"],
    }


def report(data: dict[str, Any]) -> str:
    par, ser = data["parallel"], data["serial_sample"]
    lines = [
        f"backend {data['backend']}, {par['tasks']} tasks, model latency {data['latency_s']} s "
        f"per call (scripted model), {data['machine']['cpus']} CPUs, load average "
        f"{data['machine']['load_average_1m']:.1f} at the end",
        f"parallel: wall {par['wall_s']:.2f} s, {par['passed']}/{par['tasks']} passed, "
        f"mean task {par['task_s_mean']:.2f} s (model {par['model_s_mean']:.2f} s, sandbox "
        f"{par['sandbox_s_mean']:.2f} s, checks + re-verification {par['checks_s_mean']:.2f} s)",
        f"serial:   {ser['wall_s']:.2f} s for {ser['tasks']} task(s), one at a time "
        f"-> {data['serial_s_for_all']:.1f} s for {par['tasks']}",
        f"speedup over serial: {data['speedup']:.1f}x",
        f"Critical Steps: {par['critical_steps']} (orchestration 1 + slowest sub-agent's steps); "
        f"critical path by the clock: {par['critical_path_tasks']} task(s) in a chain",
    ]
    if par["errors"]:
        lines.append(f"errors: {par['errors']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument("--concurrency", type=int, default=100, help="broker max_concurrency")
    parser.add_argument("--max-live", type=int, default=None, help="broker max_live_sandboxes")
    parser.add_argument("--warm", type=int, default=0, help="broker warm_sandboxes (pools)")
    parser.add_argument(
        "--max-starting", type=int, default=None, help="broker max_starting_sandboxes (0: none)"
    )
    parser.add_argument(
        "--serial-sample", type=int, default=5, help="tasks run serially (0: all of them)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    results = anyio.run(main, arguments)
    print(report(results))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(results, indent=2))
