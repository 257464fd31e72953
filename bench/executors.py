"""What the framework executors add to a sandbox exec, measured side by side in one run.

    python bench/executors.py [--rounds N]

Each layer gets its own started ``local`` sandbox and runs ``print(1+1)``; the layers are
interleaved round by round (rotating their order), and round 0 is a warm-up. Printed: p50 and
p95 per layer and each layer's p50 as a ratio of the bare ``Sandbox.exec`` p50 taken in the
same rounds. Target (exit status 1 if missed): every executor within 2x of the bare exec's p50
plus 2 ms (the bare exec is about a millisecond, so a fixed cost matters more than a ratio).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock

from execloop.runtime.executors.autogen import ExecloopCodeExecutor
from execloop.runtime.executors.langgraph import ThreadSandboxes
from execloop.runtime.executors.session import SandboxSession
from execloop.runtime.executors.smolagents import ExecloopExecutor
from execloop.sandboxes import SandboxSpec, create_sandbox

CODE = "print(1+1)"
SPEC = SandboxSpec(backend="local", timeout_s=30)
BARE = "Sandbox.exec"


async def measure(rounds: int) -> dict[str, list[float]]:
    token = CancellationToken()
    call = {"name": "run_python", "args": {"code": CODE}, "id": "b", "type": "tool_call"}
    config: Any = {"configurable": {"thread_id": "bench"}}
    smol = ExecloopExecutor(spec=SPEC)
    async with (
        create_sandbox(SPEC) as sandbox,
        SandboxSession(spec=SPEC) as session,
        ExecloopCodeExecutor(spec=SPEC) as autogen,
        ThreadSandboxes(spec=SPEC) as threads,
    ):
        steps: dict[str, Callable[[], Awaitable[Any]]] = {
            BARE: lambda: sandbox.exec(CODE),
            "SandboxSession.exec (shared layer)": lambda: session.exec(CODE),
            "AutoGen execute_code_blocks": lambda: autogen.execute_code_blocks(
                [CodeBlock(CODE, "python")], token
            ),
            "LangGraph tool.ainvoke": lambda: threads.tool.ainvoke(call, config),
            # smolagents is sync: its own event loop, called from a worker thread here
            "smolagents run_code_raise_errors": lambda: anyio.to_thread.run_sync(
                smol.run_code_raise_errors, CODE
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in steps}
        names = list(steps)
        try:
            for round_number in range(rounds + 1):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    start = time.perf_counter()
                    await steps[name]()
                    if round_number:
                        samples[name].append(time.perf_counter() - start)
        finally:
            await anyio.to_thread.run_sync(smol.cleanup)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    rounds = parser.parse_args().rounds
    samples = anyio.run(measure, rounds)
    bare = statistics.median(samples[BARE])
    ok = True
    print(f"{'layer':38} {'p50 ms':>8} {'p95 ms':>8} {'x bare':>7}")
    for name, values in samples.items():
        ms = sorted(v * 1000 for v in values)
        p50, p95 = statistics.median(ms), ms[int(len(ms) * 0.95) - 1]
        within = name == BARE or p50 / 1000 <= 2 * bare + 0.002
        ok &= within
        verdict = "" if name == BARE else ("PASS" if within else "FAIL")
        print(f"{name:38} {p50:8.2f} {p95:8.2f} {p50 / (bare * 1000):7.2f} {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
