"""The ``execloop`` command line. Rich output for people, ``--json`` for machines."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from execloop.errors import ExecloopError
from execloop.sandboxes import ExitReason, SandboxSpec
from execloop.sandboxes.spec import SANDBOX_UID

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


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log execloop's own steps to stderr.")
def cli(verbose: bool) -> None:
    """execloop: run agent-written scripts in hardened sandboxes and verify them."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


def _spec(**fields: Any) -> SandboxSpec:
    try:
        return SandboxSpec(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise click.BadParameter(problems) from exc


@cli.command()
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("args", nargs=-1)
@click.option("--timeout", type=float, help="Wall-clock limit in seconds [default: 60].")
@click.option("--memory", help="Memory limit, e.g. 512m or 2g [default: 1g].")
@click.option("--cpus", type=float, help="CPU limit [default: 1].")
@click.option("--pids", type=int, help="Process limit [default: 256].")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Host directory used as the workspace (kept after the run); created if missing.",
)
@click.option("--image", help="Image to run in [default: execloop's python image].")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="File or directory copied into the workspace first (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(
    script: Path,
    args: tuple[str, ...],
    timeout: float | None,
    memory: str | None,
    cpus: float | None,
    pids: int | None,
    workspace: Path | None,
    image: str | None,
    inputs: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Run SCRIPT in a fresh hardened sandbox and print a compact result."""
    from execloop.runtime.run import run_script
    from execloop.sandboxes import transfer

    if workspace is not None and not workspace.exists():
        workspace.mkdir(parents=True)
        if os.geteuid() == 0:  # the sandbox never runs as root: give it the new directory
            os.chown(workspace, SANDBOX_UID, SANDBOX_UID)
    spec = _spec(
        timeout_s=timeout, memory=memory, cpus=cpus, pids=pids, image=image, workspace_dir=workspace
    )
    files: dict[str, bytes | str] = {}
    for item in inputs:
        for path in [item] if item.is_file() else sorted(p for p in item.rglob("*") if p.is_file()):
            name = path.name if item.is_file() else path.relative_to(item.parent).as_posix()
            files[name] = path.read_bytes()
    transfer.tar_from_mapping(files)  # refuse bad names before anything starts
    with console.status(f"running {script.name} in a {spec.backend} sandbox…", spinner="dots"):
        outcome = run_script(script, spec=spec, files=files, args=args)
    result = outcome.result
    if as_json:
        out.print_json(outcome.model_dump_json())
    else:
        _print_result(script, outcome.model_dump(), workspace=outcome.manifest.summary())
    sys.exit(
        _EXIT_STATUS[result.exit_reason]
        if result.exit_reason is not ExitReason.ERROR
        else (result.exit_code or 1)
    )


_ARTIFACT_ROWS = 20


def _print_result(script: Path, outcome: dict[str, Any], *, workspace: str) -> None:
    result = outcome["result"]
    colour = "green" if result["exit_reason"] == "ok" else "red"
    peak = result["peak_memory_bytes"]
    console.print(
        f"[bold {colour}]{result['exit_reason']}[/] {script.name}: exit {result['exit_code']}, "
        f"{result['duration_s']:.2f} s" + (f", peak memory {peak / 2**20:.1f} MiB" if peak else "")
    )
    for stream in ("stdout", "stderr"):
        text = result[stream].rstrip()
        if text:
            flag = " (truncated)" if result[f"{stream}_truncated"] else ""
            console.rule(f"{stream}{flag}", style="dim")
            out.print(text, markup=False, highlight=False)
    artifacts = outcome["artifacts"]
    if artifacts:
        table = Table("artifact", "bytes", "sha256", title="workspace", title_justify="left")
        for item in artifacts[:_ARTIFACT_ROWS]:
            table.add_row(item["path"], str(item["size_bytes"]), item["sha256"][:16])
        console.print(table)
    if outcome["total_files"] > min(len(artifacts), _ARTIFACT_ROWS):  # a count, not 100k rows
        shown = min(len(artifacts), _ARTIFACT_ROWS)
        console.print(f"workspace: {workspace}; {shown} shown (--json lists up to 1000)")
    if outcome["ended"]:
        console.print(outcome["ended"], style="yellow", markup=False, highlight=False)


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
@click.option("--from-registry", is_flag=True, help="Build on python:3.11-slim from a registry.")
@click.option("--force", is_flag=True, help="Rebuild even if the tags exist.")
def images_build(from_registry: bool, force: bool) -> None:
    """Build the base and python images (debootstrap + docker import + wheelhouse)."""
    from execloop.images import build_images

    tags = build_images(
        from_registry=from_registry,
        force=force,
        log=lambda line: console.print(line, markup=False, highlight=False),
    )
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
    help="A folder of skills searched after the built-in ones (repeatable).",
)


@skills.command("list")
@_skill_dirs
@click.option("--json", "as_json", is_flag=True, help="Print the skills as JSON.")
def skills_list(dirs: tuple[Path, ...], as_json: bool) -> None:
    """The available skills: name, version, description."""
    from execloop.runtime.skills import builtin_skills_dir, list_skills

    found = list_skills(builtin_skills_dir(), *dirs)
    if as_json:
        keys = {"name", "version", "description", "folder"}
        click.echo(json.dumps([s.model_dump(mode="json", include=keys) for s in found], indent=2))
        return
    table = Table("name", "version", "description")
    for skill in found:
        table.add_row(skill.name, skill.version, skill.description.split(". ")[0])
    out.print(table)


@skills.command("show")
@click.argument("name")
@_skill_dirs
def skills_show(name: str, dirs: tuple[Path, ...]) -> None:
    """A skill's front matter in short, then its instructions."""
    from execloop.runtime.skills import builtin_skills_dir, find_skill

    skill = find_skill(name, builtin_skills_dir(), *dirs)
    required = set(skill.inputs.get("required", ()))
    inputs = [f"{k}{'*' if k in required else ''}" for k in skill.inputs.get("properties", {})]
    sandbox = skill.sandbox.model_dump(mode="json", include=skill.sandbox.model_fields_set)
    click.echo(f"{skill.name} {skill.version}\n{skill.description}\n")
    click.echo(f"folder:   {skill.folder}\ninputs:   {', '.join(inputs)}  (* required)")
    click.echo(f"defaults: {json.dumps(skill.defaults)}\nsandbox:  {json.dumps(sandbox)}")
    click.echo(f"tools:    {', '.join(skill.tools) or 'none'}")
    click.echo(f"examples: {', '.join(skill.examples) or 'none'}\nchecks:")
    for check in skill.checks:
        click.echo(f"  - [{check.kind}] {check.label()}")
    click.echo(f"\n{skill.instructions}")


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
                click.echo(str(exc), err=True)
    sys.exit(1 if failed else 0)


@cli.group()
def kernels() -> None:
    """Jupyter kernelspecs whose kernels run in execloop sandboxes."""


@kernels.command("install")
@click.option(
    "--prefix",
    type=click.Path(file_okay=False, path_type=Path),
    help="Install under PREFIX/share/jupyter/kernels [default: this Python's environment].",
)
def kernels_install(prefix: Path | None) -> None:
    """Install the execloop-docker and execloop-bubblewrap kernelspecs (nbclient, Jupyter)."""
    from execloop.sandboxes.kernelspecs import install_kernelspecs

    for folder in install_kernelspecs(prefix):
        out.print(str(folder), markup=False, highlight=False)


@cli.command()
@click.option("--all", "everything", is_flag=True, help="Remove every execloop container.")
def reap(everything: bool) -> None:
    """Remove the sandbox containers and temporary directories whose owning process is gone."""
    from execloop.sandboxes.docker_backend import default_client
    from execloop.sandboxes.reaper import reap_orphans
    from execloop.sandboxes.tempdirs import orphaned_temp_dirs, remove_temp_dir

    directories = orphaned_temp_dirs()
    for path in directories:
        remove_temp_dir(path)
    try:
        containers = f"{len(reap_orphans(default_client(), everything=everything))} container(s)"
    except ExecloopError as exc:  # no daemon here: no container of ours can be orphaned in it
        containers = f"no containers ({exc})"
    out.print(f"removed {containers} and {len(directories)} temporary directory(ies)")


def _register_commands() -> None:
    from execloop.runtime.runs_cli import demo_command, report_command, runs_command
    from execloop.runtime.task_cli import task_command

    for command in (task_command, demo_command, runs_command, report_command):
        cli.add_command(command)


_register_commands()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ExecloopError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
