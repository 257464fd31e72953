"""The MCP server's state while it runs (sessions, the broker, kept files) and the helpers
its tools share: the state of a request, errors as ``ToolError``s."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from execloop.errors import ConfigError, ExecloopError
from execloop.runtime.broker import Broker
from execloop.runtime.cli_boundary import describe_validation
from execloop.runtime.loop import LoopEvent
from execloop.runtime.mcp_sessions import SessionTable
from execloop.runtime.models.base import Model
from execloop.runtime.terminal import one_line
from execloop.sandboxes import Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = [
    "ServerConfig",
    "ServerState",
    "as_tool_error",
    "running",
    "state_of",
]

log = logging.getLogger("execloop.runtime.mcp_state")


@dataclass(frozen=True)
class ServerConfig:
    """What ``build_server`` was given; the defaults every tool call starts from."""

    spec: SandboxSpec = field(default_factory=SandboxSpec)
    model: str | None = None
    db: Path | None = None
    artifacts_dir: Path | None = None
    skill_dirs: tuple[Path, ...] = ()
    session_ttl_s: float = 900.0
    max_sessions: int = 16
    max_concurrency: int = 4
    sandbox_factory: Callable[[SandboxSpec], Sandbox] = create_sandbox
    # run_task's inputs: only under inputs_dir when set; any host path only when host_paths
    # (one local user, stdio). host_paths=False also keeps run_task on the server's model.
    inputs_dir: Path | None = None
    host_paths: bool = True

    @classmethod
    def from_keywords(
        cls, *, spec: SandboxSpec | None = None, skill_dirs: Iterable[Path] = (), **fields: Any
    ) -> ServerConfig:
        """The keywords of ``build_server`` and ``execloop_sdk_server``: these fields, with
        ``spec`` None for the default spec and ``skill_dirs`` any iterable of folders."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"unknown server keyword(s) {unknown}; the keywords are: {known}")
        return cls(spec=spec or SandboxSpec(), skill_dirs=tuple(skill_dirs), **fields)


@dataclass
class ServerState:
    """What the server's lifespan holds: the open sessions and the broker."""

    sessions: SessionTable
    broker: Broker
    artifacts: Path
    models: dict[str, Model] = field(default_factory=dict)
    # a run_task call's view of its task's events (progress), by task id
    listeners: dict[str, Callable[[LoopEvent], None]] = field(default_factory=dict)


@contextmanager
def as_tool_error(names: Mapping[str, str] | None = None) -> Iterator[None]:
    """execloop's errors and validation errors about the caller's arguments as ``ToolError``s
    that name the argument (never the SDK's withheld "Error executing tool")."""
    try:
        yield
    except ValidationError as exc:
        raise ToolError(describe_validation(exc, names or {})) from exc
    except ExecloopError as exc:
        raise ToolError(one_line(str(exc))) from exc


def state_of(ctx: Context[Any, Any]) -> ServerState:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, ServerState), "the execloop MCP server's lifespan is not running"
    return state


@asynccontextmanager
async def running(config: ServerConfig) -> AsyncIterator[ServerState]:
    """The server's state for as long as it runs: sessions (reaped when idle, all closed at
    the end), the broker on its database, the artifacts folder."""
    need_scratch = config.db is None or config.artifacts_dir is None
    scratch = make_temp_dir("mcp") if need_scratch else None
    try:
        db = config.db or Path(str(scratch)) / "runs.db"
        artifacts = config.artifacts_dir or Path(str(scratch)) / "artifacts"
        sessions = SessionTable(
            ttl_s=config.session_ttl_s,
            max_sessions=config.max_sessions,
            sandbox_factory=config.sandbox_factory,
        )
        models: dict[str, Model] = {}
        listeners: dict[str, Callable[[LoopEvent], None]] = {}

        def observe(task_id: str, event: LoopEvent) -> None:
            listener = listeners.get(task_id)
            if listener is not None:
                listener(event)

        broker = Broker(
            db=db,
            model=lambda task: models[task.id],
            max_concurrency=config.max_concurrency,
            sandbox_factory=config.sandbox_factory,
            skill_dirs=config.skill_dirs,
            outputs_dir=artifacts,
            on_event=observe,
        )
        try:
            async with broker, anyio.create_task_group() as group:
                group.start_soon(sessions.reap_forever)
                try:
                    yield ServerState(sessions, broker, artifacts, models, listeners)
                finally:
                    group.cancel_scope.cancel()
        finally:
            await sessions.close_all()
    finally:
        if scratch is not None:
            await anyio.to_thread.run_sync(remove_temp_dir, scratch)
