"""One classic conversation per API, through the model adapters' own SDK clients.

``AnthropicConversation`` speaks the Messages API (``tool_use`` blocks answered by
``tool_result`` blocks), ``OpenAIConversation`` OpenAI-compatible chat completions
(``tool_calls`` answered by ``role: tool`` messages). Both ask for one call per turn
(``disable_parallel_tool_use`` / ``parallel_tool_calls=False``) and send the whole conversation
every turn, as the classic flow does.

Prompt caching on the Messages API follows its documentation for multi-turn conversations: one
breakpoint on the system prompt (tools and system) and one on the last block of the
conversation, moved forward every turn, so each request reads the previous one's prompt and
writes what was appended. OpenAI-compatible servers cache on their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
import openai

from execloop.errors import ConfigError, ModelError
from execloop.runtime.classic_prompt import ClassicPrompt
from execloop.runtime.ledger import Usage
from execloop.runtime.models.anthropic_model import AnthropicModel
from execloop.runtime.models.anthropic_model import usage_of as anthropic_usage
from execloop.runtime.models.base import Model
from execloop.runtime.models.openai_model import OpenAIModel, usage_of

__all__ = [
    "AnthropicConversation",
    "Conversation",
    "OpenAIConversation",
    "RequestedCall",
    "Turn",
    "conversation_for",
]


@dataclass(frozen=True)
class RequestedCall:
    """A tool call the model asked for. ``arguments`` is None when they were not valid JSON."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str


@dataclass(frozen=True)
class Turn:
    text: str
    calls: list[RequestedCall]
    usage: Usage


@dataclass(frozen=True)
class ToolReply:
    call: RequestedCall
    text: str
    is_error: bool = False


class Conversation(Protocol):
    async def send(self) -> Turn:
        """Send the whole conversation; the reply is appended to it."""
        ...

    def add_results(self, replies: list[ToolReply]) -> None:
        """Append the results of the last turn's calls."""
        ...


def conversation_for(
    model: Model, prompt: ClassicPrompt, user: str, *, cache: bool = True, max_tokens: int = 4096
) -> Conversation:
    if isinstance(model, AnthropicModel):
        return AnthropicConversation(model, prompt, user, cache=cache, max_tokens=max_tokens)
    if isinstance(model, OpenAIModel):
        return OpenAIConversation(model, prompt, user, max_tokens=max_tokens)
    raise ConfigError(
        f"the classic agent needs an anthropic: or openai: model, not {model.name}: a scripted "
        "model cannot call tools (replay a plan with execloop.testing.ReplayModelServer)"
    )


@dataclass
class AnthropicConversation:
    model: AnthropicModel
    prompt: ClassicPrompt
    user: str
    cache: bool = True
    max_tokens: int = 4096
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.messages.append({"role": "user", "content": [{"type": "text", "text": self.user}]})

    async def send(self) -> Turn:
        system: dict[str, Any] = {"type": "text", "text": self.prompt.system}
        messages = [dict(m, content=list(m["content"])) for m in self.messages]
        if self.cache:
            system["cache_control"] = {"type": "ephemeral"}
            last = messages[-1]["content"]
            last[-1] = {**last[-1], "cache_control": {"type": "ephemeral"}}
        tools = [t.model_dump() for t in self.prompt.tools]
        try:
            message = await self.model.client.messages.create(
                model=self.model.name.removeprefix("anthropic:"),
                max_tokens=self.max_tokens,
                system=[system],  # type: ignore[list-item]
                messages=messages,  # type: ignore[arg-type]
                tools=tools or anthropic.omit,  # type: ignore[arg-type]
                tool_choice=(
                    {"type": "auto", "disable_parallel_tool_use": True} if tools else anthropic.omit
                ),
            )
        except anthropic.AnthropicError as exc:
            raise self.model.error_of(exc) from exc
        content: list[dict[str, Any]] = []
        texts, calls = [], []
        for block in message.content:
            if isinstance(block, anthropic.types.TextBlock) and block.text:
                texts.append(block.text)
                content.append({"type": "text", "text": block.text})
            elif isinstance(block, anthropic.types.ToolUseBlock):
                arguments = dict(block.input) if isinstance(block.input, dict) else None
                raw = json.dumps(block.input, separators=(",", ":"), ensure_ascii=False)
                calls.append(RequestedCall(block.id, block.name, arguments, raw))
                content.append(
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                )
        if content:
            self.messages.append({"role": "assistant", "content": content})
        return Turn(text="\n".join(texts), calls=calls, usage=anthropic_usage(message.usage))

    def add_results(self, replies: list[ToolReply]) -> None:
        blocks = [
            {
                "type": "tool_result",
                "tool_use_id": reply.call.id,
                "content": reply.text,
                **({"is_error": True} if reply.is_error else {}),
            }
            for reply in replies
        ]
        self.messages.append({"role": "user", "content": blocks})


@dataclass
class OpenAIConversation:
    model: OpenAIModel
    prompt: ClassicPrompt
    user: str
    max_tokens: int = 4096
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.messages += [
            {"role": "system", "content": self.prompt.system},
            {"role": "user", "content": self.user},
        ]

    async def send(self) -> Turn:
        tools = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                },
            }
            for t in self.prompt.tools
        ]
        try:
            completion = await self.model.client.chat.completions.create(
                model=self.model.name.removeprefix("openai:"),
                messages=self.messages,  # type: ignore[arg-type]
                max_tokens=self.max_tokens,
                tools=tools or openai.omit,  # type: ignore[arg-type]
                parallel_tool_calls=False if tools else openai.omit,
            )
        except openai.OpenAIError as exc:
            raise self.model.error_of(exc) from exc
        if not completion.choices:
            raise ModelError(f"{self.model.name}: malformed response: no choices")
        reply = completion.choices[0].message
        calls = []
        for call in reply.tool_calls or []:
            if call.type != "function":
                continue
            raw = call.function.arguments
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            arguments = parsed if isinstance(parsed, dict) else None
            calls.append(RequestedCall(call.id, call.function.name, arguments, raw))
        sent: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            sent["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.raw_arguments},
                }
                for c in calls
            ]
        self.messages.append(sent)
        return Turn(text=reply.content or "", calls=calls, usage=usage_of(completion.usage))

    def add_results(self, replies: list[ToolReply]) -> None:
        self.messages += [
            {"role": "tool", "tool_call_id": reply.call.id, "content": reply.text}
            for reply in replies
        ]
