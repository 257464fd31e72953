"""``execloop bench tokens``: the token suite (``tokens``), both flows side by side,
written as a page (markdown and a plot)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from execloop.errors import ConfigError
from execloop.sandboxes.spec import DEFAULT_BACKEND, ISOLATING_BACKENDS, Backend

__all__ = ["tokens_command"]

console = Console(stderr=True)
_TITLE = "# Token benchmark"


@click.command("tokens")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docs/benchmarks.md"),
    show_default=True,
    help="The markdown page; the plot is written beside it (<name>-tokens.png).",
)
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON on stdout.")
@click.option(
    "--backend",
    type=click.Choice(get_args(Backend)),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="Sandbox backend for code mode (one that hosts the tool bridge: an isolating one).",
)
@click.option(
    "--protocol",
    type=click.Choice(["anthropic", "openai"]),
    default="anthropic",
    show_default=True,
    help="Which API the replay model speaks (ignored with --model).",
)
@click.option(
    "--model",
    "model_spec",
    default=None,
    help="Measure live with this model (anthropic:MODEL or openai:URL#MODEL); default: replay.",
)
@click.option("--task", "names", multiple=True, help="Run only these tasks (repeatable).")
@click.option(
    "--tool-docs",
    type=click.Choice(["full", "summary"]),
    default="full",
    show_default=True,
    help="Code mode's tool listing: full docstrings, or each tool's first sentence "
    "(full docs on demand with help() in the sandbox).",
)
@click.option(
    "--bfcl",
    "bfcl",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also run the first N BFCL v3 multi-turn base tasks (needs: pip install --no-deps "
    "bfcl-eval mpmath).",
)
def tokens_command(
    out: Path,
    as_json: bool,
    backend: Backend,
    protocol: str,
    model_spec: str | None,
    names: tuple[str, ...],
    bfcl: int,
    tool_docs: str,
) -> None:
    """Both flows (code mode, a classic one-call-per-turn agent) on every task of the suite,
    measured side by side; without --model the model is a loopback replay (no key needed)."""
    from execloop.runtime.benchmarks.figures import TaskComparison
    from execloop.runtime.benchmarks.suite import SUITE
    from execloop.runtime.benchmarks.tokens import run_suite
    from execloop.runtime.benchmarks.tokens_report import plot_cumulative, render_markdown
    from execloop.runtime.models import parse_model

    known = {task.name: task for task in SUITE}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"--task {', '.join(unknown)}: no such task; tasks: {sorted(known)}")
    if backend not in ISOLATING_BACKENDS:
        raise ConfigError(
            f"--backend {backend} has no tool bridge; use one of {', '.join(ISOLATING_BACKENDS)}"
        )
    _check_writable(out)
    tasks = [known[name] for name in dict.fromkeys(names)] if names else list(SUITE)
    if bfcl:
        from execloop.runtime.benchmarks.bfcl import bfcl_tasks

        tasks += bfcl_tasks(bfcl)
    live = parse_model(model_spec) if model_spec else None
    if live is not None and live.scripted:
        raise ConfigError(
            "--model: a scripted model cannot run the classic agent; leave --model out to replay"
        )
    if live is None:
        console.print(
            "[yellow]REPLAY: no LLM is called; a loopback model follows recorded "
            "plans and counts tokens with the project's tokenizer.[/]"
        )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("code mode, then classic, per task", total=len(tasks))

        def done(comparison: TaskComparison) -> None:
            progress.advance(bar)
            progress.console.print(
                f"{comparison.task}: {comparison.calls} calls, input "
                f"{comparison.code.input_tokens:,} vs {comparison.classic.input_tokens:,}, "
                f"cached input saved {comparison.cached_input_savings:.0%}"
            )

        async def main() -> object:
            return await run_suite(
                tasks,
                backend=backend,
                protocol=protocol,  # type: ignore[arg-type]
                live_model=live,
                on_task=done,
                tool_docs=tool_docs,  # type: ignore[arg-type]
            )

        bench = anyio.run(main)
    from execloop.runtime.benchmarks.figures import TokenBench

    assert isinstance(bench, TokenBench)
    plot = plot_cumulative(bench, out.with_name(f"{out.stem}-tokens.png"))
    out.write_text(render_markdown(bench, plot=plot.name), encoding="utf-8")
    console.print(f"wrote {out} and {plot}")
    if as_json:
        click.echo(bench.model_dump_json(indent=2))


def _check_writable(out: Path) -> None:
    """Refuse, before any work, to replace a file that is not an earlier benchmark page."""
    if out.exists():
        try:
            head = out.read_text(encoding="utf-8")[: len(_TITLE)]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--out {out}: cannot read the existing file ({exc})") from exc
        if head != _TITLE:
            raise ConfigError(
                f"--out {out}: the file exists and is not a benchmark page; choose another --out"
            )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create its directory ({exc.strerror})") from exc
