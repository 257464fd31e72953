"""``ToolRegistry``: the tools a broker can offer, from Python callables and MCP servers.

    async with ToolRegistry() as registry:
        @registry.tool
        def search(query: str, limit: int = 10) -> list[str]:
            '''Search the catalogue.'''

        await registry.add_mcp_stdio("python", ["server.py"], prefix="files_")

The registry owns the MCP sessions it opens (and the servers it starts): they close with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from execloop.errors import ConfigError
from execloop.runtime.bridge.functions import tool_from_function
from execloop.runtime.bridge.tool import Tool, check_tool

__all__ = ["ToolRegistry"]

F = TypeVar("F", bound=Callable[..., Any])


class ToolRegistry:
    """The tools a broker can offer; owns the MCP sessions it opened (use ``async with``).

    MCP sessions run in task groups: open and close the registry in the same task.
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._stack = contextlib.AsyncExitStack()

    # -- registration ------------------------------------------------------------------------
    def add(self, tool: Tool) -> Tool:
        check_tool(tool)
        if tool.name in self._tools:
            raise ConfigError(
                f"a tool named {tool.name!r} is already registered "
                f"({self._tools[tool.name].origin}); pass name=... or a prefix"
            )
        self._tools[tool.name] = tool
        return tool

    @overload
    def tool(self, fn: F, /, *, name: str | None = None, description: str | None = None) -> F: ...

    @overload
    def tool(
        self, /, *, name: str | None = None, description: str | None = None
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Any:
        """Register a callable as a tool: ``@registry.tool``, ``@registry.tool(name=...)`` or
        ``registry.tool(fn, name=...)``. The function itself is returned unchanged."""

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add(tool_from_function(function, name=name, description=description))
            return function

        return register(fn) if fn is not None else register

    async def add_mcp_stdio(
        self,
        command: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        prefix: str = "",
        connect_timeout_s: float = 30.0,
    ) -> list[Tool]:
        """Start an MCP server as a subprocess and register its tools (named ``prefix+name``).

        ``env`` is added to a minimal inherited environment; it stays on the host.
        """
        from execloop.runtime.bridge import mcp_tools

        tools = await mcp_tools.open_stdio(
            self._stack,
            command=command,
            args=list(args),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            prefix=prefix,
            timeout_s=connect_timeout_s,
        )
        return self._add_all(tools)

    async def add_mcp_http(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        prefix: str = "",
        connect_timeout_s: float = 30.0,
    ) -> list[Tool]:
        """Connect to an MCP server over streamable HTTP and register its tools."""
        from execloop.runtime.bridge import mcp_tools

        tools = await mcp_tools.open_http(
            self._stack,
            url=url,
            headers=dict(headers) if headers is not None else None,
            prefix=prefix,
            timeout_s=connect_timeout_s,
        )
        return self._add_all(tools)

    def _add_all(self, tools: list[Tool]) -> list[Tool]:
        clashes = sorted(t.name for t in tools if t.name in self._tools)
        if clashes:
            raise ConfigError(f"tools {clashes} are already registered; pass a prefix")
        return [self.add(tool) for tool in tools]

    # -- lookup ------------------------------------------------------------------------------
    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ConfigError(
                f"no tool named {name!r}; registered: {sorted(self._tools)}"
            ) from None

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    # -- lifecycle -----------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close every MCP session (and stop the servers this registry started)."""
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
