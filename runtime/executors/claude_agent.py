"""The MCP server's tools in process for the Claude Agent SDK (``pip install
'execloop[claude-agent]'``).

The SDK serves an in-process ("sdk") MCP server to its bundled Claude Code CLI: any lowlevel
``mcp.server.Server`` given as ``{"type": "sdk", "name": ..., "instance": server}``. This
module builds that ``Server`` from the public ``MCPServer`` API (``list_tools``,
``call_tool``) with the execloop server's lifespan, so Claude sees exactly the tools, schemas
and errors that ``execloop mcp`` serves: ``run_python`` with session handles, ``run_task``,
``list_skills``, ``get_result``, ``token_report``. The SDK runs the lifespan once per query:
the sessions a query opened are closed when it ends.

    options = ClaudeAgentOptions(
        mcp_servers={"execloop": execloop_sdk_server(spec=SandboxSpec(backend="local"))},
        allowed_tools=allowed_tools(),   # pre-approved; no bypassPermissions (refused as root)
        tools=[],                        # no built-in Bash/Edit: code runs in execloop only
    )
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from execloop.errors import ConfigError
from execloop.runtime.executors.session import missing_extra

try:
    import claude_agent_sdk
except ModuleNotFoundError as exc:  # the optional extra is not installed
    raise missing_extra(exc, extra="claude-agent") from exc

from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    InputRequiredResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)

from execloop import __version__
from execloop.runtime.mcp_server import INSTRUCTIONS, server_for
from execloop.runtime.mcp_state import ServerConfig, ServerState, running

__all__ = ["SERVER_NAME", "TOOLS", "allowed_tools", "execloop_sdk_server", "lowlevel_server"]

log = logging.getLogger("execloop.runtime.executors.claude_agent")

SERVER_NAME = "execloop"
TOOLS = ("run_python", "close_session", "run_task", "list_skills", "get_result", "token_report")


def allowed_tools(name: str = SERVER_NAME, tools: Sequence[str] = TOOLS) -> list[str]:
    """Claude Code's names for the tools (``mcp__<server>__<tool>``), for ``allowed_tools``."""
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        raise ConfigError(f"tools: {unknown} are not execloop tools; choose from {TOOLS}")
    return [f"mcp__{name}__{tool}" for tool in tools]


def lowlevel_server(config: ServerConfig) -> Server[ServerState]:
    """A lowlevel MCP ``Server`` serving the execloop tools of ``config`` (its lifespan holds
    the sessions and the broker, as ``execloop mcp``'s does)."""
    app = server_for(config)

    async def on_list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=await app.list_tools())

    async def on_call_tool(
        ctx: Any, params: CallToolRequestParams
    ) -> CallToolResult | InputRequiredResult:
        context: Context[ServerState, Any] = Context(request_context=ctx, mcp_server=app)
        try:
            return await app.call_tool(params.name, params.arguments or {}, context)
        except ToolError as exc:  # the same errors as MCPServer's own handler returns
            if isinstance(exc, UnexpectedToolError):  # a bug: its text is withheld, logged
                log.error("tool %s failed", params.name, exc_info=exc.__cause__)
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)

    @asynccontextmanager
    async def lifespan(_: Server[ServerState]) -> AsyncIterator[ServerState]:
        async with running(config) as state:
            yield state

    return Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


def execloop_sdk_server(
    *, name: str = SERVER_NAME, **keywords: Any
) -> claude_agent_sdk.McpSdkServerConfig:
    """``ClaudeAgentOptions(mcp_servers={name: execloop_sdk_server(...)})``: the execloop
    tools in process. The keywords are ``build_server``'s (``spec``: backend and limits of
    every sandbox; ``model``: run_task's default model spec; ``db``: the broker database)."""
    config = ServerConfig.from_keywords(**keywords)
    return {"type": "sdk", "name": name, "instance": lowlevel_server(config)}
