"""The backends every contract test runs on, and how to find what a session left behind."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from execloop.sandboxes import Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.reaper import LABEL_SESSION

# id -> the spec fields that select the backend
BACKEND_SPECS: dict[str, dict[str, Any]] = {
    "docker": {"backend": "docker"},
    "jupyter-docker": {"backend": "jupyter", "placement": "docker"},
    "jupyter-bubblewrap": {"backend": "jupyter", "placement": "bubblewrap"},
    "local": {"backend": "local"},
    "restricted": {"backend": "restricted"},
}


def make_sandbox(backend_id: str, **fields: Any) -> Sandbox:
    return create_sandbox(SandboxSpec(**BACKEND_SPECS[backend_id], **fields))


def leftovers(session_id: str, docker_client: Any) -> list[str]:
    """Containers labelled with the session, and processes whose command line names it."""
    found = [
        f"container {c.short_id}"
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_SESSION}={session_id}"}, ignore_removed=True
        )
    ]
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if session_id in cmdline:
            found.append(f"process {process.info['pid']}: {cmdline[:120]}")
    return found


@contextlib.contextmanager
def peak_rss_growth(interval_s: float = 0.005) -> Iterator[Callable[[], int]]:
    """Samples this process's resident memory while the block runs; yields a function giving
    the largest growth over the starting value, in bytes."""
    process = psutil.Process()
    start = process.memory_info().rss
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval_s):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak - start
    finally:
        done.set()
        sampler.join()
        peak = max(peak, process.memory_info().rss)
