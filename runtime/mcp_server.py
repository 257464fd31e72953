"""execloop as an MCP server: ``run_python`` with session handles, ``run_task`` to one verified
``Result``, the skills, the broker's results and token reports, and a task's files as resources.

``build_server(...)`` returns an ``MCPServer`` (mcp 2.x); ``execloop mcp`` serves it over stdio
or streamable HTTP (``runtime/mcp_cli.py``). Every tool has input and output schemas (pydantic
models → ``structuredContent``).

A script that fails, times out or runs out of memory is *data*, as everywhere in execloop: the
call succeeds (``isError: false``) and ``exit_reason`` says what happened, so clients keep the
structured output (an ``isError`` result is not validated against the output schema, and the
MCP Inspector treats it as a failed call). A task that fails its checks is likewise a ``Result``
with ``status: failed``. ``isError: true`` is kept for calls that could not run: a bad argument
(the message names the field), an unknown ``session_id`` or ``task_id``, a backend that cannot
start here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from execloop import __version__
from execloop.errors import ConfigError, ExecloopError, SandboxError
from execloop.runtime.checks import CheckSpec
from execloop.runtime.ledger import Usage
from execloop.runtime.mcp_artifacts import add_artifact_resources
from execloop.runtime.mcp_models import (
    RunPythonOutput,
    SessionClosed,
    SkillInfo,
    SkillList,
    TaskTokens,
    TokenReport,
)
from execloop.runtime.mcp_progress import TaskProgress
from execloop.runtime.mcp_state import (
    ServerConfig,
    ServerState,
    as_tool_error,
    running,
    state_of,
)
from execloop.runtime.skills import builtin_skills_dir, resolve_skill, scan_skills
from execloop.runtime.store import TaskStore
from execloop.runtime.task import Budget, Result, Task
from execloop.runtime.terminal import one_line
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.spec import IsolatingBackend

__all__ = ["INSTRUCTIONS", "add_tools", "build_server", "server_for"]

log = logging.getLogger("execloop.runtime.mcp_server")

INSTRUCTIONS = (
    "Run Python in isolated sandboxes (run_python; pass the returned session_id to keep "
    "state), or hand a goal to a sub-agent that writes, runs and checks a script until "
    "its checks pass (run_task → one verified Result)."
)


def build_server(**keywords: Any) -> MCPServer[Any]:
    """The execloop MCP server; the keywords are ``ServerConfig``'s fields. ``spec`` is every
    sandbox's default (backend, limits); ``model`` the default ``run_task`` model spec
    (``anthropic:MODEL`` …); ``db`` the broker's SQLite file and ``artifacts_dir`` where passed
    tasks' files are kept (both default to a private temporary folder removed when the server
    stops); ``skill_dirs``, ``session_ttl_s`` (900), ``max_sessions`` (16),
    ``max_concurrency`` (4), ``sandbox_factory``. ``run_task`` reads host paths only under
    ``inputs_dir`` when it is set, and any only when ``host_paths`` (a server for one local
    user); without ``host_paths`` a client cannot pick the model either."""
    return server_for(ServerConfig.from_keywords(**keywords))


def server_for(config: ServerConfig) -> MCPServer[Any]:
    """``build_server`` from a ``ServerConfig``; its lifespan is ``running(config)``."""
    for folder in config.skill_dirs:
        if not folder.is_dir():
            raise ConfigError(f"skill_dirs: {folder} is not a folder of skills")

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[ServerState]:
        async with running(config) as state:
            yield state

    with _root_logger_left_alone():
        server: MCPServer[Any] = MCPServer(
            "execloop",
            version=__version__,
            instructions=INSTRUCTIONS,
            lifespan=lifespan,
            log_level="WARNING",
        )
    add_tools(server, config)
    add_artifact_resources(server)
    return server


@contextmanager
def _root_logger_left_alone() -> Iterator[None]:
    """``MCPServer()`` calls ``logging.basicConfig`` (mcp 2.3, python-sdk issue #1656), which a
    library must not do: only an application configures the root logger (``execloop mcp`` does,
    in the CLI). ``basicConfig`` does nothing when the root logger has a handler, so a
    ``NullHandler`` stands there while the constructor runs."""
    root = logging.getLogger()
    if root.handlers:  # configured by the application: basicConfig leaves it alone
        yield
        return
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        yield
    finally:
        root.removeHandler(placeholder)


def add_tools(server: MCPServer[Any], config: ServerConfig) -> None:
    sandboxing = ToolAnnotations(destructive_hint=True, open_world_hint=False)
    reading = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=sandboxing)
    async def run_python(
        code: Annotated[str, Field(description="Python source, run as a cell of the session.")],
        ctx: Context[Any, Any],
        session_id: Annotated[
            str | None,
            Field(
                description="A handle from an earlier call: run in that sandbox (its "
                "variables and files are kept). None: start a new sandbox."
            ),
        ] = None,
        backend: Annotated[
            IsolatingBackend | None,
            Field(description="Backend of a new session [default: the server's]."),
        ] = None,
        timeout_s: Annotated[
            float | None,
            Field(
                gt=0,
                description="Wall-clock limit of this call, seconds "
                "[default: the session's]. A timeout ends the session.",
            ),
        ] = None,
        memory: Annotated[
            str | None, Field(description="Memory limit of a new session, e.g. 512m, 2g.")
        ] = None,
    ) -> RunPythonOutput:
        """Run Python code in an isolated sandbox (no network) and return its stdout, stderr
        and exit reason. Without session_id a new sandbox starts; pass the returned session_id
        to run more code in the same sandbox (state is kept). A failing script is not an
        error of the call: see exit_reason."""
        state = state_of(ctx)
        if session_id is None:
            changes = {"backend": backend, "memory": memory}
            fields = {k: v for k, v in changes.items() if v is not None}
            with as_tool_error():
                spec = SandboxSpec.model_validate({**_explicit(config.spec), **fields})
                session = await state.sessions.open(spec)
        else:
            with as_tool_error():
                session = state.sessions.get(session_id)
            for name, value in (("backend", backend), ("memory", memory)):
                if value is not None:
                    raise ToolError(
                        f"{name}: applies to a new session only; leave it out with session_id "
                        "(or leave session_id out to start a session with it)"
                    )
        async with session.lock:
            try:
                result = await session.sandbox.exec(code, timeout=timeout_s)
            except SandboxError as exc:  # the sandbox failed as infrastructure: it is gone
                await state.sessions.discard(session)
                raise ToolError(f"{one_line(str(exc))} (session {session.id} is closed)") from exc
            except ExecloopError as exc:
                raise ToolError(one_line(str(exc))) from exc
            session.used_at = time.monotonic()  # idle from now, not from the call's start
            ended = session.sandbox.ended
        if ended is not None:
            await state.sessions.discard(session)
        return RunPythonOutput(
            session_id=session.id, session_ended=ended, **result.model_dump(mode="json")
        )

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, open_world_hint=False))
    async def close_session(session_id: str, ctx: Context[Any, Any]) -> SessionClosed:
        """Close a run_python session and its sandbox now (idle ones close by themselves)."""
        with as_tool_error():
            await state_of(ctx).sessions.close(session_id)
        return SessionClosed(session_id=session_id, closed=True)

    @server.tool(annotations=sandboxing)
    async def run_task(
        goal: Annotated[str, Field(description="What the sub-agent's script must achieve.")],
        ctx: Context[Any, Any],
        skill: Annotated[str | None, Field(description="A skill name (list_skills).")] = None,
        inputs: Annotated[
            list[str] | None,
            Field(
                description="Host paths (files or folders) copied into the workspace; links "
                "are never followed. Relative to the server's --inputs-dir when it has one."
            ),
        ] = None,
        checks: Annotated[
            list[CheckSpec] | None,
            Field(
                description='Checks the result must pass, e.g. {"kind": "expression", '
                '"expr": "result[\'rows\'] > 0"} over the script\'s result.json.'
            ),
        ] = None,
        model: Annotated[
            str | None,
            Field(
                description="anthropic:MODEL | openai:BASE_URL#MODEL | scripted:FILE "
                "[default: the server's]."
            ),
        ] = None,
        backend: Annotated[
            IsolatingBackend | None, Field(description="[default: the server's backend]")
        ] = None,
        max_attempts: Annotated[int, Field(ge=1, le=200)] = 5,
    ) -> Result:
        """Have a sub-agent solve GOAL with a script, run and checked in sandboxes until its
        checks pass; returns one verified Result (status, answer, checks, artifacts, usage).
        Progress is one scale over the task (total = max_attempts; attempt k spans k-1..k),
        reported as each attempt starts and as its script reports steps (execloop_progress:
        step of total, with its metrics in the message). A failed task is a Result, not an
        error."""
        state = state_of(ctx)
        if model is not None and not config.host_paths and model != config.model:
            raise ToolError(
                "model: this server runs run_task with its own model only (--model); a client "
                "over HTTP may not choose one (a spec names host files and endpoints)"
            )
        spec_text = model or config.model
        if spec_text is None:
            raise ToolError("model: required (the server was started without --model)")
        from execloop.runtime.models import parse_model

        try:
            chosen = parse_model(spec_text)
        except ExecloopError as exc:
            raise ToolError(f"model: {one_line(str(exc))}") from exc
        if skill is not None:
            try:
                resolve_skill(skill, skill_dirs=config.skill_dirs)
            except ExecloopError as exc:
                raise ToolError(f"skill: {one_line(str(exc))}") from exc
        paths = _input_paths(config, inputs or [])
        with as_tool_error():
            sandbox = config.spec
            if backend is not None:
                sandbox = SandboxSpec.model_validate({**_explicit(config.spec), "backend": backend})
            task = Task(
                goal=goal,
                skill=skill,
                inputs=paths,
                checks=tuple(checks or ()),
                sandbox=sandbox,
                budget=Budget(max_attempts=max_attempts),
            )
        state.models[task.id] = chosen
        relay = TaskProgress(ctx, attempts=max_attempts)
        state.listeners[task.id] = relay.on_event
        try:
            async with relay.running():
                with as_tool_error():
                    await state.broker.submit(task)
                    result = await state.broker.result(task.id)
        except anyio.get_cancelled_exc_class():  # the client gave up: so does the task
            with anyio.CancelScope(shield=True):
                await state.broker.cancel(task.id)
            raise
        finally:
            state.models.pop(task.id, None)
            state.listeners.pop(task.id, None)
        await relay.finish(result)
        return result

    @server.tool(annotations=reading)
    def list_skills() -> SkillList:
        """The skills run_task can use: name, version, description, inputs schema."""
        found, broken = scan_skills(builtin_skills_dir(), *config.skill_dirs)
        return SkillList(
            skills=[
                SkillInfo(
                    name=s.name, version=s.version, description=s.description, inputs=s.inputs
                )
                for s in found
            ],
            broken=[one_line(str(error)) for error in broken],
        )

    @server.tool(annotations=reading)
    async def get_result(task_id: str, ctx: Context[Any, Any]) -> Result:
        """The stored Result of a task run_task ran (this server's broker database)."""
        return _stored_result(state_of(ctx).broker.store, task_id)

    @server.tool(annotations=reading)
    async def token_report(
        ctx: Context[Any, Any],
        task_id: Annotated[str | None, Field(description="One task's ledger.")] = None,
        run_id: Annotated[
            str | None, Field(description="Every task of a broker run [default: this server's].")
        ] = None,
    ) -> TokenReport:
        """Tokens actually used, and what classic round-trip tool calling would have used for
        the same work (with and without prompt caching): for one task or a whole run."""
        state = state_of(ctx)
        store = state.broker.store
        if task_id is not None and run_id is not None:
            raise ToolError("task_id, run_id: give one of them, not both")
        if task_id is not None:
            results = [_stored_result(store, task_id)]
            scope: Literal["task", "run"] = "task"
        else:
            run_id = run_id or state.broker.run_id
            if run_id not in {run["id"] for run in store.runs()}:
                raise ToolError(f"run_id: no run {run_id!r} in the broker database")
            stored = (store.result(row.id) for row in store.tasks(run_id))
            results = [result for result in stored if result is not None]
            scope = "run"
        tasks = [_tokens(result) for result in results]
        total = sum((t.usage for t in tasks), Usage())
        return TokenReport(scope=scope, run_id=run_id, tasks=tasks, total=total)


def _input_paths(config: ServerConfig, inputs: list[str]) -> tuple[Path, ...]:
    """``inputs`` as host paths the server may read: any path when it serves one local user
    (stdio), else only paths inside ``inputs_dir`` (relative ones are taken from there)."""
    root = config.inputs_dir
    if config.host_paths and root is None:
        return tuple(Path(p) for p in inputs)
    if root is None and inputs:
        raise ToolError(
            "inputs: this server reads no host paths (start it with --inputs-dir DIR to allow "
            "the files under DIR)"
        )
    paths = []
    for given in inputs:
        path = (root / given).resolve() if root is not None else Path(given)
        if root is not None and not path.is_relative_to(root.resolve()):
            raise ToolError(f"inputs: {given!r} is outside the server's --inputs-dir {root}")
        paths.append(path)
    return tuple(paths)


def _explicit(spec: SandboxSpec) -> dict[str, Any]:
    return spec.model_dump(include=spec.model_fields_set)


def _stored_result(store: TaskStore, task_id: str) -> Result:
    result = store.result(task_id)
    if result is not None:
        return result
    if store.task(task_id) is None:
        raise ToolError(f"task_id: no task {task_id!r} in the broker database")
    raise ToolError(f"task_id: task {task_id!r} has no result yet (it is still running)")


def _tokens(result: Result) -> TaskTokens:
    estimate = result.usage_classic_estimate
    return TaskTokens(
        task_id=result.task_id,
        status=result.status,
        attempts=result.attempts,
        scripted=result.scripted,
        usage=result.usage,
        classic_estimate=estimate,
        comparison=estimate.compare(result.usage) if estimate is not None else None,
    )
