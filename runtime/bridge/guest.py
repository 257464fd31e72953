"""Runtime of ``execloop_tools``: the module a sandboxed script imports to call host tools.

This file runs *inside* the sandbox, so it uses the standard library only. ``stubs.py`` copies
its source verbatim and appends one generated function per allowed tool.

Protocol (newline-delimited JSON, one call per connection): connect to the Unix socket, send
``{"token": ..., "tool": ..., "arguments": {...}}`` and a newline, read one JSON line back:
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"type": ..., "message": ...}}``.
One connection per call keeps calls from threads independent (no shared socket, no locks).

The token and socket path come from the environment (``EXECLOOP_TOOLS_TOKEN``,
``EXECLOOP_TOOLS_SOCKET``), which the bridge sets in the session when it attaches: no secret is
written to any file, and processes the script starts inherit access.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Literal  # noqa: F401  (Literal is used by the generated signatures)

__all__ = ["ToolError", "call"]

SOCKET_ENV = "EXECLOOP_TOOLS_SOCKET"
TOKEN_ENV = "EXECLOOP_TOOLS_TOKEN"
DEFAULT_SOCKET = "/run/execloop/tools.sock"


class ToolError(Exception):
    """A tool call failed; ``kind`` says how (``not_allowed``, ``bad_arguments``, ``bad_token``,
    ``budget_exhausted``, ``timeout``, ``tool_error``, ``bad_request``, ``unreachable``)."""

    def __init__(self, message: str, kind: str = "tool_error") -> None:
        super().__init__(message)
        self.kind = kind


def call(tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """Call the host tool ``tool`` with ``arguments``; returns its decoded JSON result."""
    token = os.environ.get(TOKEN_ENV, "")
    path = os.environ.get(SOCKET_ENV, DEFAULT_SOCKET)
    request = {"token": token, "tool": tool, "arguments": arguments or {}}
    try:
        data = (json.dumps(request, separators=(",", ":")) + "\n").encode()
    except (TypeError, ValueError) as exc:
        message = f"arguments for {tool!r} are not JSON-serializable: {exc}"
        raise ToolError(message, "bad_arguments") from None
    reply = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(1 << 16):  # the host closes after its one reply line
                chunks.append(chunk)
            reply = b"".join(chunks)
    except OSError as exc:
        raise ToolError(
            f"the tool bridge at {path} is unreachable ({exc}); tools work only while the "
            "bridge is attached",
            "unreachable",
        ) from None
    try:
        decoded = json.loads(reply)
    except ValueError:
        raise ToolError(
            f"the tool bridge closed the connection without a valid reply to {tool!r}",
            "unreachable",
        ) from None
    if decoded.get("ok"):
        return decoded.get("result")
    error = decoded.get("error") or {}
    raise ToolError(str(error.get("message", "unknown error")), str(error.get("type", "error")))


def _invoke(tool: str, arguments: dict[str, Any], omit_if_none: tuple[str, ...] = ()) -> Any:
    """What the generated functions call: optional parameters left at ``None`` are not sent,
    so the tool applies its own default."""
    sent = {k: v for k, v in arguments.items() if not (k in omit_if_none and v is None)}
    return call(tool, sent)
