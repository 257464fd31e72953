"""What one run of ``execloop bench sandboxes`` shares with every contender's sessions, and
the shape of an open session."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BENCH_LABEL", "BenchContext", "ContenderSession", "SESSION_LABEL", "labelled"]

# Not org.execloop.*: that namespace is execloop's own and a spec refuses it (the benchmark
# labels its execloop sandboxes through SandboxSpec(labels=...), as a user would).
BENCH_LABEL = "execloop.bench.run"
SESSION_LABEL = "execloop.bench.session"


@dataclass
class BenchContext:
    """What every contender's sessions share in one run: the Docker client, the image, and
    the labels (or, for autogen, the name prefix) that find this run's containers."""

    client: Any
    image: str
    run_id: str
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def new_session(self) -> tuple[str, dict[str, str]]:
        """A fresh session id and the labels its containers carry."""
        session = f"{self.run_id}-{next(self._numbers)}"
        return session, {BENCH_LABEL: self.run_id, SESSION_LABEL: session}

    @property
    def name_prefix(self) -> str:
        return f"execloop-bench-{self.run_id}"


@dataclass
class ContenderSession:
    """One open session of a contender."""

    run: Callable[[str], Awaitable[str]]
    close: Callable[[], Awaitable[None]]
    containers: dict[str, str] | None = None  # a docker ``filters`` that finds its containers
    # else the root of its process tree on this host, asked when the memory is read
    pid: Callable[[], int | None] | None = None


def labelled(session: str) -> dict[str, str]:
    """The docker ``filters`` finding one session's containers."""
    return {"label": f"{SESSION_LABEL}={session}"}
