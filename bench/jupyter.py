"""Bench rows for the jupyter backend: each placement against a raw kernel (imported by
bench/sandbox.py).

The docker placement's raw kernel is the image's ipykernel started by hand in a container of
the same image (ipc transport in a mounted folder, ``--network none``, uid 1000). The bubblewrap
placement's raw kernel is a plain ``ipykernel`` of the same interpreter on the host, started by
jupyter_client on the ipc transport: bubblewrap adds namespaces, not work per message.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread

from execloop.runtime.benchmarks.raw_kernel import (
    docker_raw_kernel,
    raw_kernel_run,
    ready_or_stop,
)
from execloop.sandboxes import SandboxSpec

__all__ = ["jupyter_execs", "jupyter_targets"]

CODE = "print(1+1)"
WARM_UP = 20  # execs of each before the timed ones
PLACEMENTS: tuple[Literal["docker", "bubblewrap"], ...] = ("docker", "bubblewrap")


def names(placement: str) -> tuple[str, str]:
    return f"JupyterSandbox.exec(print), {placement}", f"raw kernel execute, {placement}"


async def _timed(step: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await step()
    return time.perf_counter() - start


async def host_raw_kernel(folder: Path) -> Any:
    """A plain ipykernel of this interpreter, started by jupyter_client on the ipc transport."""
    from jupyter_client.manager import AsyncKernelManager

    await anyio.Path(folder).mkdir(mode=0o700)
    manager = AsyncKernelManager(
        kernel_name="python3", transport="ipc", connection_file=str(folder / "kernel.json")
    )
    manager.ip = str(folder / "kernel")
    await manager.start_kernel()
    kc = manager.client()
    kc.start_channels(hb=False)

    async def stop() -> None:
        kc.stop_channels()
        await manager.shutdown_kernel(now=True)

    await ready_or_stop(kc, stop)
    return kc, stop


async def jupyter_execs(
    client: Any, image: str, pairs: int, labels: dict[str, str]
) -> dict[str, list[float]]:
    """``print(1+1)`` through JupyterSandbox and a raw kernel, per placement: ``pairs`` pairs
    of one exec each, alternating."""
    from execloop.sandboxes.jupyter_backend import JupyterSandbox

    samples: dict[str, list[float]] = {}
    for placement in PLACEMENTS:
        ours, raw = names(placement)
        samples[ours], samples[raw] = [], []
        sandbox = JupyterSandbox(SandboxSpec(backend="jupyter", placement=placement))
        with tempfile.TemporaryDirectory(prefix="execloop-bench-") as scratch:
            folder = Path(scratch) / "kernel"
            if placement == "docker":
                kc, stop = await docker_raw_kernel(client, image, folder, labels)
            else:
                kc, stop = await host_raw_kernel(folder)
            try:
                await sandbox.start()
                warm = await sandbox.exec(CODE), await raw_kernel_run(kc, CODE)
                if warm[0].stdout != "2\n" or warm[1] != "2\n":
                    raise RuntimeError(f"unexpected warm-up output: {warm!r}")
                steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                    (ours, functools.partial(sandbox.exec, CODE)),
                    (raw, functools.partial(raw_kernel_run, kc, CODE)),
                ]
                for _ in range(WARM_UP):  # both kernels' and clients' caches filled alike
                    for _, step in steps:
                        await step()
                # one exec of each at a time, the order flipped every pair: a burst of load
                # from the machine's other tenants lands on both sides alike
                for pair in range(pairs):
                    for name, step in steps if pair % 2 else steps[::-1]:
                        samples[name].append(await _timed(step))
            finally:
                await stop()
                await sandbox.close()
    return samples


def jupyter_targets(p50: dict[str, float]) -> list[tuple[str, float, str, float]]:
    rows = []
    for placement in PLACEMENTS:
        ours, raw = names(placement)
        if ours in p50:
            ratio = p50[ours] / p50[raw]
            rows.append((f"jupyter exec / raw kernel, {placement}", ratio, "<=", 1.1))
    return rows
