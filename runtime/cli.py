"""The ``execloop`` command line. Rich output for people, ``--json`` for machines.

The group and its global options live here; each command (or group of commands) lives in its
own ``*_cli.py`` module and is registered below."""

from __future__ import annotations

from pathlib import Path

import click

from execloop import __version__
from execloop.runtime.cli_boundary import GuardedGroup, configure_logging
from execloop.runtime.config import load_config

__all__ = ["main"]


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


def _register_commands() -> None:
    from execloop.runtime.bench_cli import bench_group
    from execloop.runtime.host_cli import (
        doctor_command,
        images_group,
        kernels_group,
        reap_command,
    )
    from execloop.runtime.mcp_cli import mcp_command
    from execloop.runtime.run_cli import run_command
    from execloop.runtime.runs_cli import demo_command, report_command, runs_command
    from execloop.runtime.skills_cli import skills_group
    from execloop.runtime.task_cli import task_command

    commands = (
        run_command,
        task_command,
        demo_command,
        runs_command,
        report_command,
        skills_group,
        images_group,
        kernels_group,
        doctor_command,
        reap_command,
        mcp_command,
        bench_group,
    )
    for command in commands:
        cli.add_command(command)


_register_commands()


def main() -> None:
    """The ``execloop`` entry point: every error is one line (see ``cli_boundary``)."""
    cli.main(prog_name="execloop")


if __name__ == "__main__":
    main()
