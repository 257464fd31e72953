"""``execloop bench sandboxes``: every execloop backend beside the executors people use
instead, in one run (``sandboxes``), printed as a table, a markdown page and a plot."""

from __future__ import annotations

import datetime
import json
import platform
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from execloop.errors import ImageError
from execloop.runtime.benchmarks.contenders import all_contenders
from execloop.runtime.benchmarks.context import BenchContext
from execloop.runtime.benchmarks.measure import machine
from execloop.runtime.benchmarks.sandboxes import Settings, leftovers, measure_all
from execloop.runtime.benchmarks.sandboxes_report import COLUMNS, markdown, plot, rows

__all__ = ["sandboxes_command"]


def _new_file(path: Path | None, flag: str) -> Path | None:
    """``path`` refused if something is there already (nothing is ever overwritten)."""
    if path is None:
        return None
    if path.exists() or path.is_symlink():
        raise click.BadParameter(f"{path} exists; give a new path", param_hint=flag)
    if not path.absolute().parent.is_dir():
        raise click.BadParameter(f"{path.absolute().parent} does not exist", param_hint=flag)
    return path


def _only(value: str | None) -> list[str]:
    keys = [c.key for c in all_contenders()]
    if not value:
        return keys
    chosen = [key.strip() for key in value.split(",") if key.strip()]
    unknown = [key for key in chosen if key not in keys]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(keys)}",
            param_hint="--only",
        )
    return chosen


@click.command("sandboxes")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True)
@click.option("--warmup-rounds", type=click.IntRange(0), default=1, show_default=True)
@click.option("--execs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--throughput-rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--throughput-execs", type=click.IntRange(1), default=30, show_default=True)
@click.option("--only", help="Comma-separated contender keys (a wrong one lists them all).")
@click.option("--json", "as_json", is_flag=True, help="Print every number as JSON.")
@click.option("--md", "md_path", type=click.Path(path_type=Path), help="Write a markdown table.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Write a PNG plot.")
def sandboxes_command(
    rounds: int,
    warmup_rounds: int,
    execs: int,
    throughput_rounds: int,
    throughput_execs: int,
    only: str | None,
    as_json: bool,
    md_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Cold start, exec p50/p95, teardown, two-session throughput and idle memory of every
    execloop backend beside llm-sandbox, autogen, smolagents, bare Docker, a raw kernel and
    a stdio REPL floor, interleaved in one run on the local image (no registry)."""
    keys = _only(only)
    md_path, plot_path = _new_file(md_path, "--md"), _new_file(plot_path, "--plot")
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError(
                "--plot needs matplotlib: pip install 'execloop[bench]'"
            ) from None
    settings = Settings(rounds, warmup_rounds, execs, throughput_rounds, throughput_execs)
    result = anyio.run(_run, [c for c in all_contenders() if c.key in keys], settings)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        table = Table(title="execloop bench sandboxes")
        for index, column in enumerate(COLUMNS):
            table.add_column(column, justify="right" if index > 2 else "left")
        for row in rows(result):
            table.add_row(*row)
        Console(width=None if sys.stdout.isatty() else 160).print(table)  # piped: no squeeze
    err = Console(stderr=True)
    if md_path is not None:
        md_path.write_text(markdown(result))
        err.print(f"markdown table written to {md_path}")
    if plot_path is not None:
        plot(result, plot_path)
        err.print(f"plot written to {plot_path}")
    if result["left_behind"]:
        raise click.ClickException(
            f"containers were left behind and are now removed: {', '.join(result['left_behind'])}"
        )


async def _run(contenders: list[Any], settings: Settings) -> dict[str, Any]:
    from execloop.images import python_image_tag
    from execloop.sandboxes.placements.container import default_client

    client = await anyio.to_thread.run_sync(default_client)
    image = python_image_tag()
    if not await anyio.to_thread.run_sync(lambda: client.images.list(name=image)):
        raise ImageError(f"image {image} is missing: build it with `execloop images build`")
    ctx = BenchContext(client=client, image=image, run_id=uuid.uuid4().hex[:10])
    steps = len(contenders) * (
        settings.warmup_rounds + settings.rounds + settings.throughput_rounds
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task("starting", total=steps)

        def advance(what: str) -> None:
            progress.update(task, description=what, advance=1)

        try:
            records = await measure_all(ctx, contenders, settings, advance)
        finally:
            with anyio.CancelScope(shield=True):  # Ctrl-C too: nothing of this run stays
                left = await anyio.to_thread.run_sync(lambda: leftovers(ctx, remove=True))
    return {
        "run_id": ctx.run_id,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**await anyio.to_thread.run_sync(machine, client), "os": platform.system()},
        "image": image,
        "settings": settings.__dict__,
        "contenders": [record.as_json() for record in records],
        "left_behind": left,
    }
