"""The sandbox options ``execloop run`` and ``execloop task`` share, and their ``--out DIR``.

Choices come from the sandboxes' registries (``BACKENDS``, ``Placement``): runtime/ never
names a backend itself. A flag given on the command line overrides the same field of the
``[sandbox]`` table of ``execloop.toml``, which overrides ``SandboxSpec``'s defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from execloop.runtime.cli_boundary import flags
from execloop.sandboxes import BACKENDS, SandboxSpec
from execloop.sandboxes.spec import Placement

__all__ = [
    "SPEC_FLAGS",
    "check_out_dir",
    "out_option",
    "sandbox_options",
    "sandbox_spec",
    "spec_fields",
]

F = TypeVar("F", bound=Callable[..., Any])

# SandboxSpec field -> the flag a person typed (errors name the flag)
SPEC_FLAGS = {
    "backend": "--backend",
    "placement": "--placement",
    "image": "--image",
    "timeout_s": "--timeout",
    "memory": "--memory",
    "cpus": "--cpus",
    "pids": "--pids",
    "gpus": "--gpus",
    "checkpoint_size": "--checkpoint-size",
    "workspace_dir": "--workspace",
}

_OPTIONS = (
    click.option(
        "--backend",
        type=click.Choice(sorted(BACKENDS)),
        help="Sandbox backend [default: docker]; restricted is not a security boundary.",
    ),
    click.option(
        "--placement",
        type=click.Choice(get_args(Placement)),
        help="Where a jupyter kernel runs: a container or a bubblewrap process.",
    ),
    click.option(
        "--image",
        help="Image to run in [default: execloop's python image]; execloop/train (or "
        "execloop/train-cpu) is the train image built by `execloop images build train`.",
    ),
    click.option("--timeout", type=float, help="Wall-clock limit in seconds [default: 60]."),
    click.option("--memory", help="Memory limit, e.g. 512m or 2g [default: 1g]."),
    click.option("--cpus", type=float, help="CPU limit [default: 1]."),
    click.option("--pids", type=int, help="Process limit [default: 256]."),
    click.option(
        "--gpus",
        help="GPUs (docker backend), as for docker run: all, a count (2), or pinned ids "
        "device=0,GPU-<uuid> [default: none].",
    ),
)


def sandbox_options(command: F) -> F:
    """Add ``--backend --placement --image --timeout --memory --cpus --pids --gpus`` to
    ``command``."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def sandbox_spec(base: Mapping[str, Any] | None = None, **given: Any) -> SandboxSpec:
    """``base`` (the config file's fields) overridden by the flags ``given`` (None: not
    given, keyed by ``SandboxSpec`` field); a bad value is a usage error naming its flag."""
    fields = {**(base or {}), **{k: v for k, v in given.items() if v is not None}}
    with flags(SPEC_FLAGS):
        return SandboxSpec(**fields)


def spec_fields(limits: Mapping[str, Any]) -> dict[str, Any]:
    """``sandbox_options``' values keyed by ``SandboxSpec`` field (``--timeout``: timeout_s)."""
    return {("timeout_s" if key == "timeout" else key): value for key, value in limits.items()}


def out_option(help_text: str) -> Callable[[F], F]:
    return click.option(
        "--out",
        "out_dir",
        type=click.Path(path_type=Path),
        help=help_text + " A new or empty directory: nothing in it is ever overwritten.",
    )


def check_out_dir(out_dir: Path) -> Path:
    """``out_dir`` made absolute, refused before anything runs if it exists and is not an
    empty directory (execloop never overwrites a file there) or if its parent is missing."""
    path = out_dir.expanduser().absolute()
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise click.BadParameter(f"{out_dir} exists and is not a directory", param_hint="--out")
    if path.is_dir() and any(path.iterdir()):
        raise click.BadParameter(
            f"{out_dir} is not empty; give a new or empty directory (nothing is overwritten)",
            param_hint="--out",
        )
    if not path.parent.is_dir():
        raise click.BadParameter(f"{path.parent} does not exist", param_hint="--out")
    return path
