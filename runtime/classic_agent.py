"""A real classic agent: the one-tool-call-per-turn loop an agent framework runs.

Each turn sends the whole conversation (system prompt, tool schemas, the task, every call and
result so far) to the model; a tool call in the reply is run on the host and its text appended
(``Tool.call_output``: an MCP tool's own text content, a Python tool's ``render_text``); a reply
without a call is the final answer. It runs live against a real model (``AnthropicModel``,
``OpenAIModel``) or against ``execloop.testing.ReplayModelServer`` following a recorded plan,
so both flows can be measured on one task without a key.

``ClassicRun`` keeps what the API reported per request, and the pieces of the ledger's formula
as this run measured them (S, U, and per call O_m and R_m), so the estimate can be checked
against the figure it estimates (``ClassicRun.formula``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from jsonschema.exceptions import best_match
from jsonschema.validators import Draft202012Validator, validator_for
from pydantic import BaseModel, ConfigDict, Field

from execloop.errors import ConfigError
from execloop.runtime.bridge.registry import ToolRegistry
from execloop.runtime.bridge.tool import Tool, ToolFailure
from execloop.runtime.classic import ClassicFlow, classic_flow
from execloop.runtime.classic_prompt import ClassicPrompt
from execloop.runtime.classic_turns import RequestedCall, ToolReply, conversation_for
from execloop.runtime.ledger import Usage
from execloop.runtime.models.base import Model
from execloop.runtime.tokens import TOKENIZER_NAME, count_tokens

__all__ = ["ClassicAgent", "ClassicCall", "ClassicRun"]

DEFAULT_MAX_TURNS = 50


class ClassicCall(BaseModel):
    """One call the classic agent made: O_m = name + arguments, R_m = the text it read back."""

    model_config = ConfigDict(frozen=True)

    tool: str
    arguments: str = Field(description="As the model emitted them (JSON).")
    text: str = Field(description="What the model read back: the tool's text, or the error.")
    emitted_tokens: int = Field(ge=0, description="O_m: tool name plus arguments.")
    read_tokens: int = Field(ge=0, description="R_m: the text read back.")
    ok: bool
    duration_s: float


class ClassicRun(BaseModel):
    """One classic run: usage per request as reported, and the formula's measured pieces."""

    model_config = ConfigDict(frozen=True)

    model: str
    tokenizer: str = TOKENIZER_NAME
    system_tokens: int = Field(ge=0, description="S: system prompt and tool definitions.")
    user_tokens: int = Field(ge=0, description="U: the task as the user message.")
    calls: tuple[ClassicCall, ...]
    requests: tuple[Usage, ...] = Field(description="Usage of each request, as reported.")
    answer: str
    finished: bool = Field(description="The model gave a final answer within max_turns.")
    wall_s: float

    @property
    def usage(self) -> Usage:
        return sum(self.requests, Usage())

    def formula(self) -> ClassicFlow:
        """The ledger's formula fed this run's measured S, U, O_m, R_m and final answer."""
        return classic_flow(
            system_tokens=self.system_tokens,
            user_tokens=self.user_tokens,
            rounds=[(c.emitted_tokens, c.read_tokens) for c in self.calls],
            final_answer_tokens=count_tokens(self.answer),
        )

    def cumulative_input(self) -> list[int]:
        """Input tokens (all kinds) sent so far after each request: the curve to plot."""
        totals, running = [], 0
        for usage in self.requests:
            running += usage.total_input_tokens
            totals.append(running)
        return totals


class ClassicAgent:
    """Runs a task the classic way with ``tools`` (e.g. from a ``ToolRegistry``, MCP tools
    included) on ``model``; ``prompt`` defaults to the classic system prompt and the tools'
    schemas. ``cache`` marks prompt-caching breakpoints (Messages API)."""

    def __init__(
        self,
        *,
        model: Model,
        tools: Sequence[Tool],
        prompt: ClassicPrompt | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        cache: bool = True,
    ) -> None:
        if max_turns < 1:
            raise ConfigError(f"ClassicAgent: max_turns must be at least 1, got {max_turns}")
        self.model = model
        self.tools = {tool.name: tool for tool in tools}
        self.prompt = prompt or ClassicPrompt.for_tools(tools)
        self.max_turns = max_turns
        self.cache = cache
        self._validators = {
            t.name: validator_for(t.input_schema, default=Draft202012Validator)(t.input_schema)
            for t in tools
        }

    @classmethod
    def from_registry(
        cls, registry: ToolRegistry, names: Sequence[str], *, model: Model, **options: Any
    ) -> ClassicAgent:
        """The agent for the registry's tools ``names`` (the task's allowlist)."""
        return cls(model=model, tools=[registry.get(name) for name in names], **options)

    async def run(self, user: str) -> ClassicRun:
        """Run until the model answers without a tool call, or ``max_turns`` requests."""
        began = time.monotonic()
        conversation = conversation_for(self.model, self.prompt, user, cache=self.cache)
        requests: list[Usage] = []
        calls: list[ClassicCall] = []
        answer, finished = "", False
        for _ in range(self.max_turns):
            turn = await conversation.send()
            requests.append(turn.usage)
            if not turn.calls:
                answer, finished = turn.text, True
                break
            replies = [await self._run_call(call, calls) for call in turn.calls]
            conversation.add_results(replies)
        return ClassicRun(
            model=self.model.name,
            system_tokens=self.prompt.tokens,
            user_tokens=count_tokens(user),
            calls=tuple(calls),
            requests=tuple(requests),
            answer=answer,
            finished=finished,
            wall_s=time.monotonic() - began,
        )

    async def _run_call(self, call: RequestedCall, calls: list[ClassicCall]) -> ToolReply:
        """Run one call; a refused or failed call is an error result the model reads."""
        began = time.monotonic()
        text, ok = await self._output(call)
        calls.append(
            ClassicCall(
                tool=call.name,
                arguments=call.raw_arguments,
                text=text,
                emitted_tokens=count_tokens(call.name) + count_tokens(call.raw_arguments),
                read_tokens=count_tokens(text),
                ok=ok,
                duration_s=time.monotonic() - began,
            )
        )
        return ToolReply(call, text, is_error=not ok)

    async def _output(self, call: RequestedCall) -> tuple[str, bool]:
        tool = self.tools.get(call.name)
        if tool is None:
            return f"Error: no tool named {call.name!r}; tools: {sorted(self.tools)}", False
        if call.arguments is None:
            return f"Error: the arguments for {call.name!r} are not a JSON object", False
        error = best_match(self._validators[call.name].iter_errors(call.arguments))
        if error is not None:
            return f"Error: arguments for {call.name!r}: {error.message}", False
        try:
            output = await tool.call_output(call.arguments)
        except ToolFailure as exc:
            return f"Error: {exc}", False
        except Exception as exc:  # a tool's bug is the model's error result, as in frameworks
            return f"Error: {type(exc).__name__}: {exc}", False
        return output.text, True
