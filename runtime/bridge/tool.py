"""``Tool``: one host tool as the bridge sees it, whatever it comes from.

A name, a description, the JSON Schema of its arguments (checked by the bridge before every
call), an optional output schema (a hint for the generated signatures) and an async ``call``.
Python callables get theirs from ``functions.tool_from_function``; MCP servers' tools from
``mcp_tools``.

A script receives the JSON value; a classic agent reads the tool's *text*. ``call_output``
gives both: an MCP tool's text is the server's own text content, a Python tool's is
``render_text`` of its value (what the MCP Python SDK sends as text content for the same
return value), so the ledger counts what a classic agent would really have read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for

from execloop.errors import ConfigError

__all__ = [
    "Tool",
    "ToolFailure",
    "ToolHandler",
    "ToolOutput",
    "ToolOutputHandler",
    "check_tool",
    "render_text",
]

ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]

# MCP allows these characters in tool names; the stubs turn them into identifiers.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class ToolFailure(Exception):
    """Raised by a tool to fail with a message that the sandbox sees verbatim."""


@dataclass(frozen=True)
class ToolOutput:
    """One call's result twice: the JSON value a script gets, the text a classic agent reads."""

    value: Any
    text: str


ToolOutputHandler = Callable[[dict[str, Any]], Awaitable[ToolOutput]]


def render_text(value: Any) -> str:
    """A return value as text content: a string as it is, anything else as JSON indented by 2
    (the MCP Python SDK's rendering of a tool's return value)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


@dataclass(frozen=True, kw_only=True)
class Tool:
    """One callable tool. ``call`` receives arguments already checked against ``input_schema``."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    origin: str = ""  # where it comes from, for messages: "python:mod.fn", "mcp:stdio:cmd"
    handler: ToolHandler = field(repr=False, compare=False)
    # the value and the tool's own text at once (MCP tools); None: text is render_text(value)
    output_handler: ToolOutputHandler | None = field(default=None, repr=False, compare=False)

    async def call(self, arguments: Mapping[str, Any]) -> Any:
        """Run the tool; the result is JSON-able."""
        return await self.handler(dict(arguments))

    async def call_output(self, arguments: Mapping[str, Any]) -> ToolOutput:
        """Run the tool; its JSON-able value and the text a classic agent would read."""
        if self.output_handler is not None:
            return await self.output_handler(dict(arguments))
        value = await self.handler(dict(arguments))
        return ToolOutput(value, render_text(value))


def check_tool(tool: Tool) -> None:
    """Refuse names the stubs cannot carry and schemas the bridge cannot check."""
    if not _NAME.match(tool.name):
        raise ConfigError(
            f"tool name {tool.name!r} ({tool.origin}) must match {_NAME.pattern}; "
            "pass name=... or a different prefix"
        )
    if tool.input_schema.get("type", "object") != "object":
        raise ConfigError(f"tool {tool.name!r}: its input schema must describe an object")
    try:
        validator_for(tool.input_schema, default=Draft202012Validator).check_schema(
            tool.input_schema
        )
    except SchemaError as exc:
        raise ConfigError(f"tool {tool.name!r}: invalid input schema: {exc.message}") from exc
