"""``execloop bench``: measurements users can take on their own machine. Each command lives
beside its benchmark in ``execloop.runtime.benchmarks``: ``tokens`` (code mode beside a classic
agent) and ``sandboxes`` (every backend beside its peers)."""

from __future__ import annotations

import click

from execloop.runtime.benchmarks.sandboxes_cli import sandboxes_command
from execloop.runtime.benchmarks.tokens_cli import tokens_command

__all__ = ["bench_group"]


@click.group("bench")
def bench_group() -> None:
    """Benchmarks to run on your own machine."""


bench_group.add_command(sandboxes_command)
bench_group.add_command(tokens_command)
