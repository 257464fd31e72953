"""execloop.runtime.bridge: host tools as plain Python functions inside the sandbox.

A ``ToolRegistry`` collects tools (Python callables, MCP servers' tools); a ``ToolBridge``
serves the ones a task allows to one sandbox over a Unix socket, where the generated module
``execloop_tools`` turns each into a function. Intermediate results stay in the sandbox.
"""

from __future__ import annotations

from execloop.runtime.bridge.functions import tool_from_function
from execloop.runtime.bridge.gate import ToolCallRecord
from execloop.runtime.bridge.registry import ToolRegistry
from execloop.runtime.bridge.server import ToolBridge
from execloop.runtime.bridge.stubs import render_module, render_tool_api
from execloop.runtime.bridge.tool import Tool, ToolFailure

__all__ = [
    "Tool",
    "ToolBridge",
    "ToolCallRecord",
    "ToolFailure",
    "ToolRegistry",
    "render_module",
    "render_tool_api",
    "tool_from_function",
]
