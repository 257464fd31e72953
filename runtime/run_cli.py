"""``execloop run``: one script in a fresh hardened sandbox, its output live, then a compact
result; the exit status is the script's, shell-style."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table
from rich.text import Text

from execloop.runtime.cli_sandbox import (
    check_out_dir,
    out_option,
    sandbox_options,
    sandbox_spec,
    spec_fields,
)
from execloop.runtime.config import Config
from execloop.runtime.progress_view import ProgressView
from execloop.runtime.terminal import printable
from execloop.sandboxes import ExecResult, ExitReason
from execloop.sandboxes.progress import ProgressEvent, without_progress_lines
from execloop.sandboxes.spec import SANDBOX_UID
from execloop.sandboxes.streaming import StreamName

if TYPE_CHECKING:
    from execloop.runtime.run import ScriptRun

__all__ = ["run_command"]

console = Console(stderr=True)
out = Console()

# Shell-style exit statuses, so `execloop run` composes in scripts and CI.
_EXIT_STATUS = {
    ExitReason.OK: 0,
    ExitReason.ERROR: 1,
    ExitReason.OUTPUT_LIMIT: 1,
    ExitReason.TIMEOUT: 124,
    ExitReason.OOM: 137,
    ExitReason.KILLED: 137,
}


@click.command("run")
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1)
@sandbox_options
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host directory used as the workspace, created if missing and kept after the run "
    "(execloop never overwrites a file in it; its copy of the script, main.py, is removed).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="File (lands as its name) or directory (lands as DIR/...) copied into the workspace "
    "first (repeatable).",
)
@out_option("Copy the workspace (the script as main.py, inputs and outputs) here afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def run_command(
    config: Config,
    /,
    script: Path,
    args: tuple[str, ...],
    workspace: Path | None,
    inputs: tuple[Path, ...],
    out_dir: Path | None,
    as_json: bool,
    **limits: Any,
) -> None:
    """Run SCRIPT in a fresh hardened sandbox and print a compact result (its output live,
    as it prints, with a progress bar for what it reports with execloop_progress, then the
    workspace's files)."""
    from execloop.runtime.host_files import read_script
    from execloop.runtime.run import run_script

    code = read_script(script)  # a fifo or a device is refused here, never read
    spec = sandbox_spec(config.sandbox_fields(), **spec_fields(limits))
    if out_dir is not None:
        out_dir = check_out_dir(out_dir)
    if workspace is not None:
        _make_workspace(workspace)
        spec = sandbox_spec(spec.model_dump(exclude_unset=True), workspace_dir=workspace)
    name = escape(_shown(script.name, console))
    status = console.status(f"running {name} in a {spec.backend} sandbox…", spinner="dots")

    live = None if as_json else _LiveOutput(status)
    bar = None if as_json else ProgressView(console)

    def progressed(event: ProgressEvent) -> None:
        assert bar is not None
        status.stop()
        bar.start()
        bar.update(event, label=script.name)

    def ran(result: ExecResult) -> None:
        status.stop()
        if bar is not None:
            bar.stop()
        if live is not None:
            live.finish(result)

    with status:
        try:
            outcome = run_script(
                code,
                spec=spec,
                inputs=inputs,
                args=args,
                on_exec=ran,
                on_output=None if live is None else live.write,
                on_progress=None if bar is None else progressed,
                out_dir=out_dir,
            )
        finally:
            if bar is not None:
                bar.stop()
    result = outcome.result
    if as_json:
        out.print_json(outcome.model_dump_json())
    else:
        _print_result(script, outcome)
        if out_dir is not None and outcome.ended is None:
            console.print(f"workspace copied to {escape(str(out_dir))}", highlight=False)
    sys.exit(
        _EXIT_STATUS[result.exit_reason]
        if result.exit_reason is not ExitReason.ERROR
        else (result.exit_code or 1)
    )


def _make_workspace(workspace: Path) -> None:
    from execloop.runtime.host_workspace import check_workspace_dir

    check_workspace_dir(workspace)
    if workspace.exists():
        return
    try:
        workspace.mkdir(parents=True)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot create {workspace}: {exc.strerror}", param_hint="--workspace"
        ) from exc
    if os.geteuid() == 0:  # the sandbox never runs as root: give it the new directory
        os.chown(workspace, SANDBOX_UID, SANDBOX_UID)


_TABLE_ROWS = 50


def _shown(text: str, console: Console) -> str:
    """``text`` as printed on ``console``: on a terminal, control characters become visible
    escapes (``\\x1b``) so sandbox output cannot drive the terminal; elsewhere it is exact."""
    return printable(text) if console.is_terminal else text


class _LiveOutput:
    """The script's output as it prints (stdout to stdout, stderr to stderr), neutralised on a
    terminal and bounded by the sandbox (``spec.max_output_bytes`` a stream); the spinner
    stops at the first byte. At the end only what the live view missed is printed (what the
    sandbox added: a traceback, why it was killed), never the same output twice."""

    def __init__(self, status: Status) -> None:
        self._status = status
        self._shown: dict[str, str] = {"stdout": "", "stderr": ""}

    def write(self, stream: StreamName, text: str) -> None:
        self._status.stop()
        self._emit(stream, text)
        self._shown[stream] += text

    @staticmethod
    def _emit(stream: str, text: str) -> None:
        target = out if stream == "stdout" else console
        # through sys.stdout/stderr: while a progress bar is live they are rich's proxies,
        # which print whole lines above the bar
        file = sys.stdout if stream == "stdout" else sys.stderr
        file.write(_shown(text, target))
        if not hasattr(file, "rich_proxied_file"):  # a proxy prints a partial line as a line
            file.flush()

    def finish(self, result: ExecResult) -> None:
        for stream in ("stdout", "stderr"):
            shown, text = self._shown[stream], getattr(result, stream)
            if stream == "stdout":  # the live view showed a bar instead of progress lines
                text = without_progress_lines(text)
            if getattr(result, f"{stream}_truncated"):
                if shown and not shown.endswith("\n"):
                    self._emit(stream, "\n")
                console.print(
                    f"[dim]{stream} was truncated: shown live up to the output bound; "
                    "--json gives its head and tail[/]",
                    highlight=False,
                )
                continue
            rest = text[len(shown) :] if text.startswith(shown) else text
            if rest and shown and not shown.endswith("\n") and rest is text:
                rest = "\n" + rest
            if shown and not (shown + rest).endswith("\n"):
                rest += "\n"  # the summary starts on a line of its own
            if rest:
                self._emit(stream, rest)


def _print_result(script: Path, outcome: ScriptRun) -> None:
    from execloop.runtime.host_files import human_bytes

    result = outcome.result
    colour = "green" if result.ok else "red"
    peak = result.peak_memory_bytes
    console.print(
        f"[bold {colour}]{result.exit_reason.value}[/] {escape(_shown(script.name, console))}: "
        f"exit {result.exit_code}, {result.duration_s:.2f} s"
        + (f", peak memory {peak / 2**20:.1f} MiB" if peak else ""),
        highlight=False,
    )
    if outcome.artifacts:
        table = Table("artifact", "bytes", "sha256", title="workspace", title_justify="left")
        for item in outcome.artifacts[:_TABLE_ROWS]:
            table.add_row(Text(_shown(item.path, console)), str(item.size_bytes), item.sha256[:16])
        console.print(table)
        listed = outcome.artifacts[:_TABLE_ROWS]
        more = outcome.artifacts_total_files - len(listed)
        if more > 0:
            rest = outcome.artifacts_total_bytes - sum(item.size_bytes for item in listed)
            console.print(f"… and {more:,} more files, {human_bytes(rest)}", highlight=False)
    if outcome.ended:
        console.print(_shown(outcome.ended, console), style="yellow", markup=False, highlight=False)
