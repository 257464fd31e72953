"""What the MCP server adds to one exec: ``run_python`` with a session_id over stdio (a real
``execloop mcp`` process and the official client) against ``Sandbox.exec`` on the same
backend, interleaved round by round in one run. Prints p50/p95 of each and their ratio.

    python bench/mcp_overhead.py [--rounds N] [--backend local|docker]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from execloop.sandboxes import SandboxSpec, create_sandbox

CODE = "x += 1"


def _p(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if len(samples) > 1 else samples[0]


async def main(rounds: int, backend: str) -> int:
    execloop = str(Path(sys.executable).with_name("execloop"))
    params = StdioServerParameters(command=execloop, args=["mcp", "--backend", backend])
    direct: list[float] = []
    served: list[float] = []
    async with create_sandbox(SandboxSpec(backend=backend)) as sandbox, Client(params) as client:
        await sandbox.exec("x = 0")
        first = await client.call_tool("run_python", {"code": "x = 0"})
        handle = first.structured_content["session_id"]  # type: ignore[index]
        for number in range(rounds + 1):  # round 0 warms up
            began = time.perf_counter()
            await sandbox.exec(CODE)
            took_direct = time.perf_counter() - began
            began = time.perf_counter()
            await client.call_tool("run_python", {"code": CODE, "session_id": handle})
            took_served = time.perf_counter() - began
            if number:
                direct.append(took_direct)
                served.append(took_served)
    rows = [("Sandbox.exec", direct), ("MCP run_python (stdio)", served)]
    for name, samples in rows:
        p50, p95 = _p(samples, 50) * 1e3, _p(samples, 95) * 1e3
        print(f"{name:24} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    print(f"ratio p50 MCP / direct: {_p(served, 50) / _p(direct, 50):.2f}x ({rounds} rounds)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    options = parser.parse_args()
    sys.exit(anyio.run(main, options.rounds, options.backend))
