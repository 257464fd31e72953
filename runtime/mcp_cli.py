"""``execloop mcp``: serve the MCP server over stdio (default) or streamable HTTP.

Over HTTP the server listens on loopback unless told otherwise, and any other address needs a
bearer token (``--token`` or ``EXECLOOP_MCP_TOKEN``): a code-execution server reachable from
the network without one would run anybody's code. With a token every request must carry
``Authorization: Bearer <token>`` (compared in constant time), on loopback too. HTTP clients
are not the server's user: run_task reads host files only under ``--inputs-dir`` and runs with
the server's ``--model`` only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import click

from execloop.runtime.cli_boundary import flags
from execloop.runtime.config import Config
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.spec import DEFAULT_BACKEND, ISOLATING_BACKENDS

__all__ = ["BearerTokenApp", "is_loopback", "mcp_command", "parse_listen"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

TOKEN_ENV = "EXECLOOP_MCP_TOKEN"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port); ``ValueError`` says what is
    wrong."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8765, got {value!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


class BearerTokenApp:
    """An ASGI app that lets through HTTP requests carrying ``Authorization: Bearer <token>``
    and answers others 401 (lifespan events always pass)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = json.dumps(
                    {"error": "unauthorized", "detail": "send Authorization: Bearer <token>"}
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


@click.command("mcp")
@click.option(
    "--http",
    "listen",
    metavar="HOST:PORT",
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (loopback unless a "
    "token is set).",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    help=f"Bearer token HTTP requests must carry [env {TOKEN_ENV}]; required off loopback.",
)
@click.option(
    "--backend",
    type=click.Choice(ISOLATING_BACKENDS),
    help=f"Sandbox backend of run_python sessions and run_task [default: {DEFAULT_BACKEND}].",
)
@click.option("--memory", help="Memory limit per sandbox, e.g. 512m or 2g [default: 1g].")
@click.option("--timeout", type=float, help="Per-call wall-clock limit, seconds [default: 60].")
@click.option("--model", help="Default run_task model: anthropic:MODEL | openai:... | scripted:…")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Broker database (get_result, token_report, `execloop runs`) [default: temporary].",
)
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where passed tasks' files are kept (served as resources) [default: temporary].",
)
@click.option(
    "--skill-dir",
    "skill_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder of your own skills (repeatable).",
)
@click.option(
    "--session-ttl",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds after which an idle run_python session is closed.",
)
@click.option("--max-sessions", type=int, default=16, show_default=True)
@click.option(
    "--inputs-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="run_task reads host files only under this folder [default: any path over stdio, "
    "none over HTTP].",
)
@click.pass_obj
def mcp_command(
    config: Config,
    /,
    listen: str | None,
    token: str | None,
    backend: str | None,
    memory: str | None,
    timeout: float | None,
    model: str | None,
    db: Path | None,
    artifacts: Path | None,
    skill_dirs: tuple[Path, ...],
    session_ttl: float,
    max_sessions: int,
    inputs_dir: Path | None,
) -> None:
    """Serve execloop's tools (run_python, run_task, list_skills, get_result, token_report)
    to MCP clients, over stdio or streamable HTTP."""
    from execloop.runtime.mcp_server import build_server

    address = None
    if listen is not None:
        with flags("--http"):
            try:
                address = parse_listen(listen)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--http") from exc
        if not is_loopback(address[0]) and not token:
            raise click.UsageError(
                f"--http {listen} is not a loopback address: set a bearer token with --token "
                f"or {TOKEN_ENV} (anyone who can reach it could run code)"
            )
    elif token:
        raise click.UsageError("--token applies to --http only (stdio has no requests to check)")
    if session_ttl <= 0 or max_sessions < 1:
        raise click.UsageError("--session-ttl must be positive and --max-sessions at least 1")
    given: dict[str, Any] = {"backend": backend, "memory": memory, "timeout_s": timeout}
    fields = {**config.sandbox_fields(), **{k: v for k, v in given.items() if v is not None}}
    if fields.setdefault("backend", DEFAULT_BACKEND) not in ISOLATING_BACKENDS:  # from the file
        raise click.UsageError(
            f"{config.path}: sandbox.backend: the MCP server offers only "
            f"{', '.join(ISOLATING_BACKENDS)} (its callers' code is untrusted)"
        )
    names = {"backend": "--backend", "memory": "--memory", "timeout_s": "--timeout"}
    with flags(names):
        spec = SandboxSpec.model_validate(fields)
    model = model or config.model
    db = db or config.db
    skill_dirs = (*skill_dirs, *config.skill_dirs)
    if model is not None:
        from execloop.runtime.models import parse_model

        with flags("--model"):
            parse_model(model)  # a bad spec is refused now, not at the first run_task
    server = build_server(
        spec=spec,
        model=model,
        db=db,
        artifacts_dir=artifacts,
        skill_dirs=skill_dirs,
        session_ttl_s=session_ttl,
        max_sessions=max_sessions,
        inputs_dir=inputs_dir,
        host_paths=address is None,  # over HTTP, clients are not the server's user
    )
    if address is None:
        anyio.run(server.run_stdio_async)
        return
    import uvicorn

    host, port = address
    app: ASGIApp = server.streamable_http_app(host=host)
    if token:
        app = BearerTokenApp(app, token)
    click.echo(f"execloop MCP server on http://{listen}/mcp", err=True)
    settings = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    anyio.run(uvicorn.Server(settings).serve)
