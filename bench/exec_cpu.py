"""CPU per stateful exec on each side: execloop's docker sandbox beside the stdio floor REPL.

    python bench/exec_cpu.py [--execs N] [--profile DIR]

Wall time on a shared two-core machine says little; CPU time does: the host side is this
process's CPU time over ``N`` sequential execs of ``print(1+1)``, the container side is the
container's cgroup CPU counter (``cpuacct.usage``, cgroup v1) over the same execs. With
``--profile DIR`` the host side runs under cProfile, and so does the helper's main thread inside
the container (enabled by an exec, so it covers the helper's own work between execs); both
profiles' top entries are printed and the raw files are written to DIR.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from execloop.images import python_image_tag
from execloop.runtime.benchmarks.floor import start_floor
from execloop.sandboxes import DockerSandbox, SandboxSpec
from execloop.sandboxes.docker_backend import default_client

CODE = "print(1+1)"
LABELS = {"org.execloop.bench": "1"}
_ENABLE = "import cProfile as _cp; _execloop_prof = _cp.Profile(); _execloop_prof.enable()"
_DUMP = "_execloop_prof.disable(); _execloop_prof.dump_stats('/workspace/helper.prof')"


def container_cpu_ns(container_id: str) -> int:
    """The container's CPU time so far (cgroup v1 cpuacct; Docker's default cgroup parent)."""
    path = Path("/sys/fs/cgroup/cpuacct/docker") / container_id / "cpuacct.usage"
    return int(path.read_text())


async def measure(
    container_id: str, step: Callable[[], Awaitable[Any]], n: int
) -> tuple[float, float]:
    """(host CPU ms per exec, container CPU ms per exec) over ``n`` execs of ``step``."""
    for _ in range(20):
        await step()
    inside, host = container_cpu_ns(container_id), time.process_time()
    for _ in range(n):
        await step()
    host = time.process_time() - host
    inside = container_cpu_ns(container_id) - inside
    return host * 1e3 / n, inside / 1e6 / n


def top(stats: pstats.Stats, count: int = 25) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(count)
    return out.getvalue()


async def main(args: argparse.Namespace) -> int:
    client = await anyio.to_thread.run_sync(default_client)
    image = python_image_tag()
    sandbox = DockerSandbox(SandboxSpec(), client=client)
    floor = await start_floor(client, image, LABELS, via="stdio")
    try:
        await sandbox.start()
        sandbox_id = sandbox.placement.container.id  # type: ignore[attr-defined]
        rows = []
        for round_ in range(args.rounds):
            ours = await measure(sandbox_id, lambda: sandbox.exec(CODE), args.execs)
            bare = await measure(floor.container.id, lambda: floor.exec(CODE), args.execs)
            rows.append((ours, bare))
            print(
                f"round {round_}: execloop host {ours[0]:.3f} ms, container {ours[1]:.3f} ms | "
                f"floor host {bare[0]:.3f} ms, container {bare[1]:.3f} ms (per exec)"
            )
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            assert (await sandbox.exec(_ENABLE)).ok
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.execs):
                await sandbox.exec(CODE)
            profiler.disable()
            assert (await sandbox.exec(_DUMP)).ok
            (args.profile / "helper.prof").write_bytes(await sandbox.read_file("helper.prof"))
            profiler.dump_stats(args.profile / "host.prof")
            print("== host side ==")
            print(top(pstats.Stats(profiler)))
            print("== helper (main thread, in the container) ==")
            print(top(pstats.Stats(str(args.profile / "helper.prof"))))
    finally:
        await sandbox.close()
        await floor.aclose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", type=Path, help="profile both sides; raw files go here")
    sys.exit(anyio.run(main, parser.parse_args()))
