"""``ReplayModelServer``: a loopback model that follows a plan, for runs without an API key.

It speaks the real JSON of both APIs the adapters use, on 127.0.0.1: the Anthropic Messages
API (``POST /v1/messages``: ``tool_use`` blocks, ``usage`` with the cache fields) and
OpenAI-compatible chat completions (``POST /v1/chat/completions``: ``tool_calls``,
``prompt_tokens_details.cached_tokens``). Each request is answered by the next planned step:

    with ReplayModelServer() as server:
        server.plan([ToolUse("get_order", {"order_id": "A-1"}), FinalText("Shipped.")])
        model = AnthropicModel(model="replay", base_url=server.base_url, api_key="replay")

Usage is counted from the request itself with the project's tokenizer (``TOKENIZER_NAME``),
one count per piece the model reads: each tool definition as its JSON, each system block and
text, a ``tool_use`` as its name plus its compact JSON input, a ``tool_result`` as its text.
Wrapper tokens a provider adds per message are not counted (nor by the ledger's estimate).

Prompt caching is simulated as the Messages API documents it: a ``cache_control`` breakpoint
writes the prefix up to it (tools, then system, then messages); a later request reads the
longest prefix it shares with a breakpoint written before, and writes the rest up to its own
last breakpoint. The cache lives as long as the server (``clear_cache`` empties it); minimum
cacheable lengths and expiry are not simulated. On the OpenAI path caching is automatic (every
prefix seen is cached, reads reported as ``cached_tokens``, writes not reported).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from execloop.runtime.benchmarks.loopback import LoopbackServer, PlannedResponse, RecordedRequest
from execloop.runtime.tokens import compact_json, count_tokens, tool_definition_tokens

__all__ = ["FinalText", "PlanStep", "ReplayModelServer", "SubmitScript", "ToolUse"]

_CREATED = 1_700_000_000


@dataclass(frozen=True)
class ToolUse:
    """The model calls ``name`` with ``arguments`` (one call in its turn)."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class FinalText:
    """The model ends its turn with ``text`` (a classic agent's final answer)."""

    text: str


@dataclass(frozen=True)
class SubmitScript:
    """The model submits ``script`` through execloop's ``submit_script`` tool (code mode)."""

    script: str


PlanStep = ToolUse | FinalText | SubmitScript


@dataclass(frozen=True)
class _Piece:
    """One thing in a prompt, in cache order: its identity for the cache, and its tokens."""

    key: str
    tokens: int
    breakpoint: bool = False


class ReplayModelServer(LoopbackServer):
    """Loopback model server following a plan; see the module docstring."""

    paths = ("/v1/messages", "/v1/chat/completions")

    def __init__(self) -> None:
        super().__init__()
        self._cache: set[str] = set()
        self._cache_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """For ``AnthropicModel`` (the SDK appends ``/v1/messages``)."""
        return self.origin

    @property
    def openai_base_url(self) -> str:
        """For ``OpenAIModel`` (the SDK appends ``/chat/completions``)."""
        return f"{self.origin}/v1"

    def plan(self, steps: Iterable[PlanStep]) -> None:
        """Queue one reply per step, in order."""
        for step in steps:
            self.push(PlannedResponse(200, functools.partial(self._reply, step=step)))

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # -- answering ---------------------------------------------------------------------------
    def _reply(self, request: RecordedRequest, step: PlanStep) -> dict[str, Any]:
        body = request.body if isinstance(request.body, dict) else {}
        if request.path == "/v1/messages":
            return self._anthropic(body, step)
        return self._openai(body, step)

    def _anthropic(self, body: dict[str, Any], step: PlanStep) -> dict[str, Any]:
        read, written, uncached = self._cached(_anthropic_pieces(body), automatic=False)
        content: list[dict[str, Any]]
        if isinstance(step, FinalText):
            content = [{"type": "text", "text": step.text}]
        else:
            name, arguments = _call_of(step)
            tool_id = self.next_id("toolu_replay_")
            content = [{"type": "tool_use", "id": tool_id, "name": name, "input": arguments}]
        return {
            "id": self.next_id("msg_replay_"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "replay"),
            "content": content,
            "stop_reason": "end_turn" if isinstance(step, FinalText) else "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": uncached,
                "output_tokens": _output_tokens(step),
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": written,
                    "ephemeral_1h_input_tokens": 0,
                },
                "service_tier": "standard",
            },
        }

    def _openai(self, body: dict[str, Any], step: PlanStep) -> dict[str, Any]:
        read, _, uncached = self._cached(_openai_pieces(body), automatic=True)
        prompt = read + uncached
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if isinstance(step, FinalText):
            message["content"] = step.text
        else:
            name, arguments = _call_of(step)
            function = {"name": name, "arguments": compact_json(arguments)}
            call = {"id": self.next_id("call_replay_"), "type": "function", "function": function}
            message["tool_calls"] = [call]
        output = _output_tokens(step)
        return {
            "id": self.next_id("chatcmpl-replay"),
            "object": "chat.completion",
            "created": _CREATED,
            "model": body.get("model", "replay"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "stop" if isinstance(step, FinalText) else "tool_calls",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
                "prompt_tokens_details": {"cached_tokens": read, "audio_tokens": 0},
            },
        }

    def _cached(self, pieces: Sequence[_Piece], *, automatic: bool) -> tuple[int, int, int]:
        """(read, written, neither) for a prompt of ``pieces``; records what it writes."""
        hashes, totals = [], []
        digest, total = hashlib.sha256(), 0
        for piece in pieces:
            digest.update(piece.key.encode())
            total += piece.tokens
            hashes.append(digest.copy().hexdigest())
            totals.append(total)
        marks = (
            range(len(pieces)) if automatic else [i for i, p in enumerate(pieces) if p.breakpoint]
        )
        if not marks:
            return 0, 0, total
        last = max(marks)
        with self._cache_lock:
            hit = max((i for i in range(last + 1) if hashes[i] in self._cache), default=None)
            self._cache.update(hashes[i] for i in marks)
        read = totals[hit] if hit is not None else 0
        if automatic:
            return read, 0, total - read
        return read, totals[last] - read, total - totals[last]


def _call_of(step: ToolUse | SubmitScript) -> tuple[str, dict[str, Any]]:
    if isinstance(step, SubmitScript):
        return "submit_script", {"script": step.script}
    return step.name, step.arguments


def _output_tokens(step: PlanStep) -> int:
    if isinstance(step, FinalText):
        return count_tokens(step.text)
    name, arguments = _call_of(step)
    return count_tokens(name) + count_tokens(compact_json(arguments))


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True) + "\x00"


def _anthropic_pieces(body: dict[str, Any]) -> list[_Piece]:
    """Tools, system, then every message block: the Messages API's cache order."""
    pieces = []
    for tool in body.get("tools") or []:
        definition = {k: tool.get(k, "") for k in ("name", "description", "input_schema")}
        tokens = tool_definition_tokens(**definition)
        pieces.append(_Piece(_key(definition), tokens, "cache_control" in tool))
    system = body.get("system") or []
    for block in [{"type": "text", "text": system}] if isinstance(system, str) else system:
        text = str(block.get("text", ""))
        pieces.append(_Piece(_key(text), count_tokens(text), "cache_control" in block))
    for message in body.get("messages") or []:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks or []:
            mark = "cache_control" in block
            shown = {k: v for k, v in block.items() if k not in ("cache_control", "id")}
            pieces.append(_Piece(_key([message.get("role"), shown]), _block_tokens(block), mark))
    return pieces


def _block_tokens(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "tool_use":
        return count_tokens(str(block.get("name", ""))) + count_tokens(
            compact_json(block.get("input", {}))
        )
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return sum(count_tokens(str(part.get("text", ""))) for part in content)
        return count_tokens(str(content))
    return count_tokens(str(block.get("text", "")))


def _openai_pieces(body: dict[str, Any]) -> list[_Piece]:
    """Tools, then messages in order (one piece each; tool calls as name plus arguments)."""
    pieces = []
    for tool in body.get("tools") or []:
        function = tool.get("function", {})
        definition = {
            "name": function.get("name", ""),
            "description": function.get("description", ""),
            "input_schema": function.get("parameters", {}),
        }
        pieces.append(_Piece(_key(definition), tool_definition_tokens(**definition)))
    for message in body.get("messages") or []:
        tokens = count_tokens(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            name, arguments = str(function.get("name", "")), str(function.get("arguments", ""))
            tokens += count_tokens(name) + count_tokens(arguments)
        shown = {k: v for k, v in message.items() if k not in ("tool_call_id", "tool_calls")}
        calls = [c.get("function") for c in message.get("tool_calls") or []]
        pieces.append(_Piece(_key([shown, calls]), tokens))
    return pieces
