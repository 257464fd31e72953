"""``FunctionModel``: a ``Model`` whose replies a function computes from each request, as
pydantic-ai's ``FunctionModel`` does, for tests that need replies to depend on the prompt (the
failure report of the last attempt, the input listing, the skill's instructions).

    def reply(request: ModelRequest, number: int) -> str | None:
        if "failed" in request.messages[-1].content:
            return "print('second try')"      # the script of this reply
        return "raise SystemExit(1)"

    model = FunctionModel(reply)

The function (plain or async) returns the script (a str), ``None`` (a reply without a script)
or a whole ``ModelReply``. Usage is counted as ``ScriptedModel`` counts it, and every reply is
marked ``scripted``: no LLM wrote it. ``requests`` keeps every request, in order.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from execloop.runtime.models.base import ModelReply, ModelRequest
from execloop.runtime.models.scripted import counted_usage

__all__ = ["FunctionModel", "ReplyFunction"]

# (the request, its 1-based number among this model's requests) -> script, None or a reply
ReplyFunction = Callable[
    [ModelRequest, int],
    str | ModelReply | Awaitable[str | ModelReply | None] | None,
]


class FunctionModel:
    """``Model`` computing each reply with ``function`` (see the module docstring)."""

    def __init__(self, function: ReplyFunction, *, name: str = "function") -> None:
        self.function = function
        self._name = f"function:{name}"
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def scripted(self) -> bool:
        return True

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        outcome = self.function(request, len(self.requests))
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, ModelReply):
            return outcome
        return ModelReply(
            script=outcome,
            usage=counted_usage(request, text="", script=outcome),
            model=self._name,
            stop_reason="tool_use" if outcome is not None else "end_turn",
            scripted=True,
        )
