"""MCP servers' tools as ``Tool`` records, through the official ``mcp`` client (2.x API).

Each server gets one ``ClientSession`` entered into the registry's exit stack, so the session
and (for stdio) the server process end when the registry closes. Every call goes through that
session; concurrent calls are fine (the session multiplexes JSON-RPC requests).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp import types as mcp_types
from mcp.client.streamable_http import streamable_http_client

from execloop.errors import ConfigError
from execloop.runtime.bridge.tool import Tool, ToolFailure, ToolOutput, render_text

__all__ = ["mcp_result_value", "open_http", "open_stdio", "tools_of"]

log = logging.getLogger("execloop.runtime.bridge")


async def open_stdio(
    stack: contextlib.AsyncExitStack,
    *,
    command: str,
    args: list[str],
    env: dict[str, str] | None,
    cwd: str | None,
    prefix: str,
    timeout_s: float,
) -> list[Tool]:
    params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
    origin = f"mcp:stdio:{command}"
    try:
        async with contextlib.AsyncExitStack() as server:
            read, write = await server.enter_async_context(stdio_client(params))
            session = await server.enter_async_context(ClientSession(read, write))
            tools = await _initialize(session, origin=origin, prefix=prefix, timeout_s=timeout_s)
            stack.push_async_callback(server.pop_all().aclose)  # the registry owns it now
    except Exception as exc:
        raise _registration_error(exc, f"{origin} {args}") from exc
    return tools


async def open_http(
    stack: contextlib.AsyncExitStack,
    *,
    url: str,
    headers: dict[str, str] | None,
    prefix: str,
    timeout_s: float,
) -> list[Tool]:
    origin = f"mcp:http:{url}"
    try:
        async with contextlib.AsyncExitStack() as server:
            http_client = None
            if headers:  # credentials in headers stay on the host, in this client
                import httpx2

                http_client = await server.enter_async_context(
                    httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
                )
            read, write = await server.enter_async_context(
                streamable_http_client(url, http_client=http_client)
            )
            session = await server.enter_async_context(ClientSession(read, write))
            tools = await _initialize(session, origin=origin, prefix=prefix, timeout_s=timeout_s)
            stack.push_async_callback(server.pop_all().aclose)
    except Exception as exc:
        raise _registration_error(exc, origin) from exc
    return tools


def _registration_error(exc: BaseException, origin: str) -> ConfigError:
    """The first real error under the task groups' ``ExceptionGroup`` wrapping, as a
    ``ConfigError``: a server that cannot be started, reached or listed is a bad registration."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, ConfigError):
        return exc
    return ConfigError(f"could not start or reach the MCP server ({origin}): {exc}")


async def _initialize(
    session: ClientSession, *, origin: str, prefix: str, timeout_s: float
) -> list[Tool]:
    try:
        # Only the requests are under the deadline: the contexts entered before must outlive it.
        with anyio.fail_after(timeout_s):
            await session.initialize()
            listed = await _list_all(session)
    except TimeoutError as exc:
        raise ConfigError(
            f"the MCP server ({origin}) did not answer within {timeout_s:g} s"
        ) from exc
    except Exception as exc:  # any transport or protocol failure means a bad registration
        raise ConfigError(f"the MCP server ({origin}) failed to initialize: {exc}") from exc
    log.info("%s offers %d tools", origin, len(listed))
    return tools_of(session, listed, origin=origin, prefix=prefix)


async def _list_all(session: ClientSession) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    while True:
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def tools_of(
    session: ClientSession, listed: list[mcp_types.Tool], *, origin: str, prefix: str
) -> list[Tool]:
    return [_wrap(session, tool, origin=origin, prefix=prefix) for tool in listed]


def _wrap(session: ClientSession, spec: mcp_types.Tool, *, origin: str, prefix: str) -> Tool:
    remote_name = spec.name
    output_schema = spec.output_schema

    async def output(arguments: dict[str, Any]) -> ToolOutput:
        try:
            result = await session.call_tool(remote_name, arguments)
        except MCPError as exc:
            raise ToolFailure(f"the MCP server refused the call: {exc.error.message}") from exc
        if result.is_error:
            raise ToolFailure(_text_of(result.content) or "the MCP tool reported an error")
        # a classic agent reads the text content; structured-only replies get the SDK's rendering
        value = mcp_result_value(result, output_schema)
        return ToolOutput(value, _text_of(result.content) if result.content else render_text(value))

    async def handler(arguments: dict[str, Any]) -> Any:
        return (await output(arguments)).value

    return Tool(
        name=prefix + remote_name,
        description=spec.description or spec.title or "",
        input_schema=dict(spec.input_schema),
        output_schema=_unwrapped_schema(output_schema),
        origin=f"{origin}#{remote_name}",
        handler=handler,
        output_handler=output,
    )


def _is_result_wrapper(schema: dict[str, Any] | None) -> bool:
    """The SDK's servers wrap a non-object return value as ``{"result": value}``."""
    return bool(schema) and set((schema or {}).get("properties", {})) == {"result"}


def _unwrapped_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is not None and _is_result_wrapper(schema):
        inner: dict[str, Any] = schema["properties"]["result"]
        return inner
    return schema


def mcp_result_value(result: mcp_types.CallToolResult, output_schema: dict[str, Any] | None) -> Any:
    """Structured content when present (unwrapped from ``{"result": ...}``), else the text
    content joined; other content kinds are named, never inlined (they can be large)."""
    structured = result.structured_content
    if structured is not None:
        if _is_result_wrapper(output_schema) and set(structured) == {"result"}:
            return structured["result"]
        return structured
    return _text_of(result.content)


def _text_of(content: list[mcp_types.ContentBlock]) -> str:
    parts = []
    for block in content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            mime = getattr(block, "mime_type", None)
            parts.append(f"[{block.type} content{f' ({mime})' if mime else ''} omitted]")
    return "\n".join(parts)
