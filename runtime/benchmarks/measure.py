"""Timing helpers every benchmark shares: a timed await, p50/p95 in ms, a blocking call in a
worker thread, and the machine a run was taken on."""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

__all__ = ["machine", "stats", "thread", "timed"]


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
