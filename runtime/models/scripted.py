"""``ScriptedModel``: replays prepared replies, for the keyless demo and for tests.

A replies file (YAML or JSON) is a list; each item is a string (the script) or a mapping::

    - "print('hello')"
    - script: |
        import json
        json.dump({"ok": True}, open("result.json", "w"))
      text: Second try.
      delay_s: 0.2          # sleep before answering (concurrency tests)
      usage: {input_tokens: 900, output_tokens: 40}   # else counted, see below
    - text: I cannot do that.   # a reply without a script

Usage is counted with the project's tokenizer: the request's ``prompt_tokens`` (tool
definitions such as ``submit_script``, system blocks and messages: what every request sends)
in and the reply's text and script (output), so ledgers are non-zero and deterministic.
Every reply says ``scripted=True`` and ``model="scripted:<name>"``.

Replies are handed out in call order, shared by every caller. When they run out the model
raises ``ModelError`` (``when_exhausted="error"``, the default: asking for more replies than
were scripted is a bug in the script worth hearing about) or keeps answering with the last
one (``when_exhausted="repeat_last"``, for demos that only need "an answer").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import anyio
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from execloop.errors import ConfigError, ModelError
from execloop.runtime.ledger import Usage
from execloop.runtime.models.base import ModelReply, ModelRequest
from execloop.runtime.tokens import count_tokens

__all__ = ["ScriptedModel", "ScriptedReply", "WhenExhausted", "counted_usage"]

WhenExhausted = Literal["error", "repeat_last"]


class ScriptedReply(BaseModel):
    """One prepared reply. A bare string stands for ``ScriptedReply(script=...)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    script: str | None = None
    text: str = ""
    delay_s: float = Field(default=0.0, ge=0)
    usage: Usage | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"script": value}
        if isinstance(value, dict) and isinstance(value.get("usage"), dict):
            # A reply is one request, whether or not the file says so.
            return {**value, "usage": {"requests": 1, **value["usage"]}}
        return value


class ScriptedModel:
    """``Model`` that replays ``replies`` in order (see the module docstring)."""

    def __init__(
        self,
        replies: Iterable[ScriptedReply | str | dict[str, Any]],
        *,
        name: str = "replies",
        when_exhausted: WhenExhausted = "error",
    ) -> None:
        try:
            self._replies = tuple(ScriptedReply.model_validate(item) for item in replies)
        except ValidationError as exc:
            raise ConfigError(f"ScriptedModel {name!r}: invalid reply: {exc}") from exc
        if not self._replies:
            raise ConfigError(f"ScriptedModel {name!r}: no replies given")
        if when_exhausted not in ("error", "repeat_last"):
            raise ConfigError(
                f"ScriptedModel: when_exhausted must be 'error' or 'repeat_last', "
                f"not {when_exhausted!r}"
            )
        self._name = f"scripted:{name}"
        self._when_exhausted = when_exhausted
        self._next = 0

    @classmethod
    def from_file(
        cls, path: str | Path, *, name: str | None = None, when_exhausted: WhenExhausted = "error"
    ) -> ScriptedModel:
        """Load replies from a ``.json`` file, else YAML; ``name`` defaults to the file stem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            items = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"scripted replies file {path}: cannot read it: {exc}") from exc
        if not isinstance(items, list):
            raise ConfigError(
                f"scripted replies file {path}: expected a list of replies (strings or "
                f"mappings with script/text/delay_s/usage), got {type(items).__name__}"
            )
        return cls(_validated(items, path), name=name or path.stem, when_exhausted=when_exhausted)

    @property
    def name(self) -> str:
        return self._name

    @property
    def scripted(self) -> bool:
        return True

    @property
    def remaining(self) -> int:
        """Replies not yet handed out."""
        return max(len(self._replies) - self._next, 0)

    async def complete(self, request: ModelRequest) -> ModelReply:
        # Taken before any await, so concurrent callers get distinct replies in call order.
        index = self._next
        if index >= len(self._replies):
            if self._when_exhausted == "error":
                raise ModelError(
                    f"{self._name}: all {len(self._replies)} scripted replies are used up "
                    "(add replies, or use when_exhausted='repeat_last')"
                )
            index = len(self._replies) - 1
        self._next += 1
        item = self._replies[index]
        if item.delay_s:
            await anyio.sleep(item.delay_s)
        return ModelReply(
            text=item.text,
            script=item.script,
            usage=item.usage or counted_usage(request, text=item.text, script=item.script),
            model=self._name,
            stop_reason="tool_use" if item.script is not None else "end_turn",
            scripted=True,
        )


def _validated(items: Sequence[Any], path: Path) -> list[ScriptedReply]:
    replies = []
    for number, item in enumerate(items, start=1):
        try:
            replies.append(ScriptedReply.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(f"scripted replies file {path}, item {number}: {exc}") from exc
    return replies


def counted_usage(request: ModelRequest, *, text: str, script: str | None) -> Usage:
    """A reply's usage as no provider reports it: the request's ``prompt_tokens`` in, the
    reply's text and script out (by the project's tokenizer)."""
    return Usage(
        input_tokens=request.prompt_tokens,
        output_tokens=count_tokens(text) + count_tokens(script or ""),
        requests=1,
    )
