"""A tiny MCP server on the real ``mcp`` 2.x server API, for the tool bridge's tests.

    python -m tests.fakes.mcp_echo_server                 # stdio
    python -m tests.fakes.mcp_echo_server --http 8765     # streamable HTTP on 127.0.0.1

``ECHO_API_KEY`` stands for a credential: the server holds it, the sandbox never sees it.
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("execloop-echo", log_level="WARNING")


class Stats(BaseModel):
    count: int
    total: float


@server.tool()
def echo(text: str, times: int = 1) -> str:
    """Repeat ``text`` ``times`` times."""
    return text * times


@server.tool()
def stats(values: list[float]) -> Stats:
    """Count and sum numbers."""
    return Stats(count=len(values), total=sum(values))


@server.tool()
def key_suffix() -> str:
    """The last four characters of the server's API key (a credential kept on the host)."""
    return os.environ.get("ECHO_API_KEY", "")[-4:]


@server.tool()
def fail(message: str) -> str:
    """Always fails with ``message`` (a ``ToolError`` is reported to the client verbatim)."""
    raise ToolError(message)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(argv[1]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1:])
