"""``execloop skills``: list, show and validate skills (SKILL.md folders)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from execloop.runtime.config import Config
from execloop.runtime.terminal import one_line, printable

__all__ = ["skills_group"]

out = Console()


@click.group("skills")
def skills_group() -> None:
    """List, show and validate skills (SKILL.md folders)."""


_skill_dirs = click.option(
    "--dir",
    "dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of skills searched after the built-in ones, before execloop.toml's "
    "skill_dirs (repeatable).",
)


@skills_group.command("list")
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


@skills_group.command("show")
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


@skills_group.command("validate")
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
