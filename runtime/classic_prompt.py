"""The classic agent's prompt: its own system prompt and the tools' JSON schemas.

A classic agent does not read execloop's Python API listing: it gets the tools as request
``tools`` (name, description, input schema) and a system prompt saying how to use them. The
ledger's estimate prices this prompt, given by the caller or derived from the registry, and
the classic agent (``classic_agent``) sends exactly this one, so both count the same text.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from execloop.runtime.bridge.tool import Tool
from execloop.runtime.models.base import ToolDefinition
from execloop.runtime.tokens import count_tokens

__all__ = ["CLASSIC_SYSTEM_PROMPT", "ClassicPrompt", "tool_definitions"]

CLASSIC_SYSTEM_PROMPT = (
    "You are an agent that completes the user's task by calling the tools provided. Call one "
    "tool at a time and wait for its result before deciding the next call. When the task is "
    "done, reply with a short final answer in plain text and make no further tool call."
)


def tool_definitions(tools: Sequence[Tool]) -> tuple[ToolDefinition, ...]:
    """The request ``tools`` a classic agent sends for ``tools``."""
    return tuple(
        ToolDefinition(name=t.name, description=t.description, input_schema=t.input_schema)
        for t in tools
    )


class ClassicPrompt(BaseModel):
    """What every classic request starts with: system prompt and tool definitions (S)."""

    model_config = ConfigDict(frozen=True)

    system: str = CLASSIC_SYSTEM_PROMPT
    tools: tuple[ToolDefinition, ...] = Field(default=())

    @classmethod
    def for_tools(cls, tools: Sequence[Tool], *, system: str | None = None) -> ClassicPrompt:
        return cls(system=system or CLASSIC_SYSTEM_PROMPT, tools=tool_definitions(tools))

    @property
    def tokens(self) -> int:
        """S: the system prompt plus every tool definition, by the project's tokenizer."""
        return count_tokens(self.system) + sum(tool.tokens for tool in self.tools)
