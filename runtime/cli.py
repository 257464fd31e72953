"""The ``execloop`` command line. Rich output for people, ``--json`` for machines."""

from __future__ import annotations

import json
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

from execloop import __version__
from execloop.runtime.cli_boundary import GuardedGroup, configure_logging, flags
from execloop.runtime.cli_sandbox import (
    check_out_dir,
    out_option,
    sandbox_options,
    sandbox_spec,
    spec_fields,
)
from execloop.runtime.config import Config, load_config
from execloop.runtime.progress_view import ProgressView
from execloop.runtime.terminal import one_line, printable
from execloop.sandboxes import ExecResult, ExitReason
from execloop.sandboxes.progress import ProgressEvent, without_progress_lines
from execloop.sandboxes.spec import SANDBOX_UID
from execloop.sandboxes.streaming import StreamName

if TYPE_CHECKING:
    from execloop.runtime.run import ScriptRun

__all__ = ["main"]

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


@click.group(cls=GuardedGroup)
@click.option(
    "-v", "--verbose", is_flag=True, help="Log execloop's own steps; tracebacks with errors."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings file [default: ./execloop.toml if present]; flags override it.",
)
@click.version_option(__version__, prog_name="execloop")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, config_file: Path | None) -> None:
    """execloop: run agent-written scripts in hardened sandboxes and verify them."""
    configure_logging(verbose=verbose)
    ctx.obj = load_config(config_file)


@cli.command()
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
def run(
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor(as_json: bool) -> None:
    """Say what works here (daemon, images, bubblewrap, user namespaces, GPU) and how to fix."""
    from execloop.runtime.doctor import run_doctor

    findings = run_doctor()
    if as_json:
        out.print_json(json.dumps([f.model_dump() for f in findings]))
    else:
        table = Table("check", "", "detail", "how to fix")
        for f in findings:
            mark = "[green]ok[/]" if f.ok else ("[red]FAIL[/]" if f.required else "[yellow]no[/]")
            table.add_row(f.name, mark, f.detail, "" if f.ok else f.fix)
        out.print(table)
    sys.exit(0 if all(f.ok for f in findings if f.required) else 1)


@cli.group()
def images() -> None:
    """Build and inspect the sandbox images (offline by default)."""


@images.command("build")
@click.argument("image", type=click.Choice(["python", "train"]), default="python")
@click.option(
    "--torch",
    "variant",
    type=click.Choice(["cuda", "cpu"]),
    default="cuda",
    show_default=True,
    help="train only: PyPI's CUDA torch (serves CPU and GPU hosts, several GB) or a CPU-only "
    "torch (small; execloop/train-cpu).",
)
@click.option("--from-registry", is_flag=True, help="Build on python:3.11-slim from a registry.")
@click.option("--force", is_flag=True, help="Rebuild even if the tags exist.")
def images_build(image: str, variant: str, from_registry: bool, force: bool) -> None:
    """Build the base and python images (debootstrap + docker import + wheelhouse), or with
    IMAGE `train` the train image (PyTorch, transformers, PEFT, TRL; built only when asked)."""
    from execloop.images import build_images, build_train_image

    def log(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    if image == "train":
        tags = build_train_image(variant=variant, from_registry=from_registry, force=force, log=log)
    else:
        tags = build_images(from_registry=from_registry, force=force, log=log)
    for tag in tags:
        out.print(tag)


@cli.group()
def skills() -> None:
    """List, show and validate skills (SKILL.md folders)."""


_skill_dirs = click.option(
    "--dir",
    "dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of skills searched after the built-in ones, before execloop.toml's "
    "skill_dirs (repeatable).",
)


@skills.command("list")
@_skill_dirs
@click.option("--json", "as_json", is_flag=True, help="Print the skills as JSON.")
@click.pass_obj
def skills_list(config: Config, /, dirs: tuple[Path, ...], as_json: bool) -> None:
    """The available skills: name, version, description. A broken skill is reported on
    stderr (one line each, exit status 1) and the good ones are still listed."""
    from execloop.runtime.skills import builtin_skills_dir, scan_skills

    found, broken = scan_skills(builtin_skills_dir(), *dirs, *config.skill_folders())
    if as_json:
        keys = {"name", "version", "description", "folder"}
        click.echo(json.dumps([s.model_dump(mode="json", include=keys) for s in found], indent=2))
    else:
        table = Table("name", "version", "description")
        for skill in found:
            cells = (skill.name, skill.version, skill.description.split(". ")[0])
            table.add_row(*(Text(printable(cell)) for cell in cells))
        out.print(table)
    for error in broken:
        click.echo(f"broken skill: {one_line(str(error))}", err=True)
    sys.exit(1 if broken else 0)


@skills.command("show")
@click.argument("name")
@_skill_dirs
@click.pass_obj
def skills_show(config: Config, /, name: str, dirs: tuple[Path, ...]) -> None:
    """A skill's front matter in short, then its instructions."""
    from execloop.runtime.skills import resolve_skill

    skill = resolve_skill(name, skill_dirs=(*dirs, *config.skill_folders()))
    required = set(skill.inputs.get("required", ()))
    inputs = [f"{k}{'*' if k in required else ''}" for k in skill.inputs.get("properties", {})]
    sandbox = skill.sandbox.model_dump(mode="json", include=skill.sandbox.model_fields_set)
    lines = [
        f"{skill.name} {skill.version}\n{skill.description}\n",
        f"folder:   {skill.folder}\ninputs:   {', '.join(inputs)}  (* required)",
        f"defaults: {json.dumps(skill.defaults)}\nsandbox:  {json.dumps(sandbox)}",
        f"tools:    {', '.join(skill.tools) or 'none'}",
        f"examples: {', '.join(skill.examples) or 'none'}\nchecks:",
        *(f"  - [{check.kind}] {check.label()}" for check in skill.checks),
        f"\n{skill.instructions}",
    ]
    text = "\n".join(lines)
    click.echo(printable(text) if out.is_terminal else text)


@skills.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def skills_validate(paths: tuple[Path, ...]) -> None:
    """Validate skills: a SKILL.md, a skill folder, or a folder of skill folders."""
    from execloop.errors import SkillError
    from execloop.runtime.skills import load_skill

    failed = 0
    for path in paths:
        inner = [] if path.is_file() or (path / "SKILL.md").exists() else sorted(path.iterdir())
        for target in [p for p in inner if (p / "SKILL.md").is_file()] or [path]:
            try:
                click.echo(f"ok {load_skill(target).name}")
            except SkillError as exc:
                failed += 1
                click.echo(printable(str(exc)), err=True)
    sys.exit(1 if failed else 0)


@cli.group()
def kernels() -> None:
    """Jupyter kernelspecs whose kernels run in execloop sandboxes."""


@kernels.command("install")
@click.option(
    "--prefix",
    type=click.Path(path_type=Path),
    help="Install under PREFIX/share/jupyter/kernels [default: this Python's environment].",
)
def kernels_install(prefix: Path | None) -> None:
    """Install the execloop-docker and execloop-bubblewrap kernelspecs (nbclient, Jupyter)."""
    from execloop.sandboxes.kernelspecs import install_kernelspecs

    with flags("--prefix"):
        folders = install_kernelspecs(prefix)
    for folder in folders:
        click.echo(str(folder))


@cli.command()
@click.option("--all", "everything", is_flag=True, help="Remove every execloop container.")
def reap(everything: bool) -> None:
    """Remove the sandbox containers, temporary directories and cgroups whose owning process
    is gone."""
    from execloop.sandboxes import remove_orphans

    removed = remove_orphans(everything=everything)
    containers = f"{len(removed.containers)} container(s)"
    if removed.no_containers is not None:  # no daemon here: none of ours can be orphaned in it
        containers = f"no containers ({removed.no_containers})"
    out.print(
        f"removed {containers}, {len(removed.temp_dirs)} temporary directory(ies) "
        f"and {len(removed.cgroups)} cgroup(s)"
    )


def _register_commands() -> None:
    from execloop.runtime.bench_cli import bench_group
    from execloop.runtime.mcp_cli import mcp_command
    from execloop.runtime.runs_cli import demo_command, report_command, runs_command
    from execloop.runtime.task_cli import task_command

    commands = (task_command, demo_command, runs_command, report_command, mcp_command)
    for command in (*commands, bench_group):
        cli.add_command(command)


_register_commands()


def main() -> None:
    """The ``execloop`` entry point: every error is one line (see ``cli_boundary``)."""
    cli.main(prog_name="execloop")


if __name__ == "__main__":
    main()
