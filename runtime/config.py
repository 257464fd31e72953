"""``execloop.toml``: a project's defaults for the CLI and the Python API.

Looked up in the working directory (or named with ``--config FILE`` / ``load_config(path)``).
Flags and keyword arguments override it; it overrides the built-in defaults. Every table is
checked with pydantic (``extra="forbid"``), so a misspelt key is a ``ConfigFileError`` naming
the key and the file, never silently ignored::

    model = "anthropic:claude-sonnet-4-5"   # --model
    db = "runs.db"                          # the broker database (task --db, mcp --db)
    skill_dirs = ["my-skills"]              # searched after the built-in skills

    [sandbox]                               # SandboxSpec fields (--backend, --memory, ...)
    backend = "local"
    memory = "512m"
    timeout_s = 30

    [[tools.mcp]]                           # MCP servers whose tools the bridge offers
    command = ["python", "catalogue_server.py"]
    prefix = "cat_"

    [[tools.mcp]]
    url = "http://127.0.0.1:8000/mcp"

Relative paths are relative to the file's folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from execloop.errors import ConfigFileError
from execloop.runtime.bridge import ToolRegistry
from execloop.sandboxes import SandboxSpec

__all__ = ["CONFIG_NAME", "Config", "McpSource", "ToolSources", "load_config"]

CONFIG_NAME = "execloop.toml"


class McpSource(BaseModel):
    """One MCP server the tool bridge connects to: a ``command`` (stdio) or a ``url`` (HTTP)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: tuple[str, ...] | None = Field(default=None, min_length=1)
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    prefix: str = ""
    cwd: Path | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> McpSource:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self


class ToolSources(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mcp: tuple[McpSource, ...] = ()


class Config(BaseModel):
    """The parsed file; ``path`` is None for the empty default (no file found)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path | None = Field(default=None, exclude=True)
    model: str | None = None
    db: Path | None = None
    skill_dirs: tuple[Path, ...] = ()
    sandbox: dict[str, Any] = Field(default_factory=dict)
    tools: ToolSources = ToolSources()

    def sandbox_fields(self) -> dict[str, Any]:
        """The ``[sandbox]`` table as ``SandboxSpec`` keyword arguments."""
        return dict(self.sandbox)

    def skill_folders(self) -> tuple[Path, ...]:
        """``skill_dirs``, each checked to be a folder (searched after the built-in skills and
        after those given by flags)."""
        for folder in self.skill_dirs:
            if not folder.is_dir():
                where = self.path or Path(CONFIG_NAME)
                raise ConfigFileError(
                    f"{where}: skill_dirs: {folder} is not a folder of skills",
                    path=where,
                    key="skill_dirs",
                )
        return self.skill_dirs

    def sandbox_spec(self, **overrides: Any) -> SandboxSpec:
        """A ``SandboxSpec`` from the file, ``overrides`` (keyword arguments) winning."""
        return SandboxSpec(**{**self.sandbox, **overrides})

    async def add_tools(self, registry: ToolRegistry) -> list[str]:
        """Connect ``registry`` to every ``[[tools.mcp]]`` server; the tool names added."""
        names: list[str] = []
        for source in self.tools.mcp:
            if source.command is not None:
                command, *args = source.command
                tools = await registry.add_mcp_stdio(
                    command,
                    args,
                    env=source.env or None,
                    cwd=None if source.cwd is None else str(source.cwd),
                    prefix=source.prefix,
                )
            else:
                assert source.url is not None
                tools = await registry.add_mcp_http(
                    source.url, headers=source.headers or None, prefix=source.prefix
                )
            names += [tool.name for tool in tools]
        return names


def load_config(path: Path | str | None = None, *, cwd: Path | None = None) -> Config:
    """``path`` parsed (it must exist), else ``execloop.toml`` in ``cwd`` (default: the
    working directory) if there is one, else the empty ``Config``."""
    if path is None:
        found = (cwd or Path.cwd()) / CONFIG_NAME
        if not found.is_file():
            return Config()
        path = found
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError(
            f"{path}: cannot read it: {exc.strerror or exc}", path=path, key=None
        ) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}", path=path, key=None) from exc
    if "path" in data:  # the one field of Config that the file does not set
        raise ConfigFileError(f"{path}: path: unknown key", path=path, key="path")
    try:
        config = Config.model_validate(data)
        config = config.model_copy(update={"path": path, **_resolved(config, path.parent)})
        SandboxSpec(**config.sandbox)  # a bad [sandbox] field is named now, not at first use
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        top = ("sandbox",) if exc.title == SandboxSpec.__name__ else ()
        key = ".".join(str(part) for part in (*top, *loc))
        what = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigFileError(f"{path}: {key}: {what}", path=path, key=key) from None
    return config


def _resolved(config: Config, folder: Path) -> dict[str, Any]:
    """The file's relative paths, made relative to its folder."""
    update: dict[str, Any] = {
        "skill_dirs": tuple(folder / p for p in config.skill_dirs),
    }
    if config.db is not None:
        update["db"] = folder / config.db
    if "workspace_dir" in config.sandbox:
        update["sandbox"] = {
            **config.sandbox,
            "workspace_dir": folder / str(config.sandbox["workspace_dir"]),
        }
    mcp = [
        source if source.cwd is None else source.model_copy(update={"cwd": folder / source.cwd})
        for source in config.tools.mcp
    ]
    update["tools"] = ToolSources(mcp=tuple(mcp))
    return update
