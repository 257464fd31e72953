"""The commands that set up and look after this host: ``execloop doctor`` (what works here),
``images`` (build the sandbox images), ``kernels`` (install the kernelspecs) and ``reap``
(remove what a dead process left behind)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from execloop.runtime.cli_boundary import flags

__all__ = ["doctor_command", "images_group", "kernels_group", "reap_command"]

console = Console(stderr=True)
out = Console()


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def doctor_command(as_json: bool) -> None:
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


@click.group("images")
def images_group() -> None:
    """Build and inspect the sandbox images (offline by default)."""


@images_group.command("build")
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


@click.group("kernels")
def kernels_group() -> None:
    """Jupyter kernelspecs whose kernels run in execloop sandboxes."""


@kernels_group.command("install")
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


@click.command("reap")
@click.option("--all", "everything", is_flag=True, help="Remove every execloop container.")
def reap_command(everything: bool) -> None:
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
