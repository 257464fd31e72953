"""The one small protocol every model adapter implements, and the values it exchanges.

The loop asks for one script per turn. A reply carries the script (from a ``submit_script``
tool call, or ``None`` when the model answered otherwise), the text, and the usage reported by
the provider. ``scripted`` marks replies from ``ScriptedModel``: every output built from them
must say so.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from execloop.runtime.ledger import Usage
from execloop.runtime.tokens import count_tokens, tool_definition_tokens

__all__ = [
    "Message",
    "Model",
    "ModelReply",
    "ModelRequest",
    "SUBMIT_SCRIPT_TOOL",
    "ToolDefinition",
]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str


class ToolDefinition(BaseModel):
    """A tool the model may call, as JSON Schema (the Messages API's shape)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    input_schema: dict[str, Any]

    @functools.cached_property
    def tokens(self) -> int:
        """Its size in a request, by the project's tokenizer (``tool_definition_tokens``)."""
        return tool_definition_tokens(self.name, self.description, self.input_schema)


SUBMIT_SCRIPT_TOOL = ToolDefinition(
    name="submit_script",
    description=(
        "Submit one complete Python script. execloop runs it in a sandbox, runs the task's "
        "checks and reports back. Submit the whole script every time, not a diff."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "script": {"type": "string", "description": "The complete Python script."},
            "notes": {"type": "string", "description": "One line on what changed and why."},
        },
        "required": ["script"],
    },
)


class ModelRequest(BaseModel):
    """One turn. ``system`` blocks are the stable prefix (system, skill, tool API): adapters
    that support prompt caching mark the last of them as cacheable."""

    model_config = ConfigDict(frozen=True)

    system: tuple[str, ...]
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = (SUBMIT_SCRIPT_TOOL,)
    max_tokens: int = Field(default=4096, gt=0)

    @functools.cached_property
    def prompt_tokens(self) -> int:
        """The prompt's size (tool definitions, system blocks and messages) by the project's
        tokenizer: the one count of a request, computed once however many readers (loop,
        scripted models) ask. The tools are counted because every request sends them."""
        parts = [*self.system, *(message.content for message in self.messages)]
        return sum(tool.tokens for tool in self.tools) + sum(count_tokens(p) for p in parts)


class ModelReply(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str = ""
    script: str | None = None
    usage: Usage = Usage()
    model: str
    stop_reason: str | None = None
    scripted: bool = False
    # HTTP attempts behind this reply: 1 + the retries the SDK made (429, 529, timeouts).
    # Failed attempts are not billed, so ``usage.requests`` stays 1; this shows what was hit.
    attempts: int = Field(default=1, ge=1)


@runtime_checkable
class Model(Protocol):
    """What the loop needs from a model. Adapters map provider errors to ``ModelError``."""

    @property
    def name(self) -> str: ...

    @property
    def scripted(self) -> bool: ...

    async def complete(self, request: ModelRequest) -> ModelReply: ...
