"""A loopback fake of the Anthropic Messages API (``POST /v1/messages``).

Replies have the API's real shape: ``id``, ``type: message``, ``role``, ``model`` (echoed
from the request unless given), ``content`` blocks (``text``; ``tool_use`` with ``id``,
``name``, ``input``), ``stop_reason``, ``stop_sequence`` and ``usage`` with the cache fields.
Errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with a
``request-id`` header, and ``retry-after`` / ``retry-after-ms`` when asked for.

A request with ``"stream": true`` (the Claude Code CLI's) gets the same message as server-sent
events, as the API streams it: ``message_start`` (empty content), per block
``content_block_start`` / ``content_block_delta`` (``text_delta`` or ``input_json_delta``) /
``content_block_stop``, then ``message_delta`` (``stop_reason``, output usage) and
``message_stop``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from execloop.runtime.benchmarks.loopback import (
    EventStream,
    LoopbackServer,
    PlannedResponse,
    RecordedRequest,
)

__all__ = ["DEFAULT_USAGE", "ERROR_MESSAGES", "FakeAnthropicServer", "message_events"]

DEFAULT_USAGE: Mapping[str, int | None] = {
    "input_tokens": 100,
    "output_tokens": 20,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}

# What the real API says for each error type (messages abridged).
ERROR_MESSAGES = {
    "invalid_request_error": "messages: field required",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}


class FakeAnthropicServer(LoopbackServer):
    paths = ("/v1/messages",)

    @property
    def base_url(self) -> str:
        """What to give the SDK (it appends ``/v1/messages``)."""
        return self.origin

    def push_reply(
        self,
        *,
        script: str | None = None,
        text: str = "",
        usage: Mapping[str, int | None] | None = None,
        tool_name: str = "submit_script",
        tool_input: Mapping[str, Any] | None = None,
        stop_reason: str | None = None,
        model: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue a message: ``text`` as a text block, then ``script`` as a ``tool_name`` call
        (``tool_input`` replaces ``{"script": script}``). ``usage`` overrides ``DEFAULT_USAGE``
        field by field; ``None`` values are sent as JSON null, as some providers do."""
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        if script is not None or tool_input is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": self.next_id("toolu_fake_"),
                    "name": tool_name,
                    "input": dict(tool_input) if tool_input is not None else {"script": script},
                }
            )
        numbers = {**DEFAULT_USAGE, **(usage or {})}
        message_id = self.next_id("msg_fake_")

        def body(request: RecordedRequest) -> dict[str, Any] | EventStream:
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model or (request.body or {}).get("model", "claude-fake"),
                "content": content,
                "stop_reason": stop_reason
                or ("tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"),
                "stop_sequence": None,
                "usage": {
                    **numbers,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": numbers["cache_creation_input_tokens"] or 0,
                        "ephemeral_1h_input_tokens": 0,
                    },
                    "service_tier": "standard",
                },
            }
            streamed = isinstance(request.body, dict) and request.body.get("stream") is True
            return EventStream(message_events(message)) if streamed else message

        headers = {"request-id": self.next_id("req_fake_")}
        self.push(PlannedResponse(200, body, headers, delay_s))

    def push_error(
        self,
        status: int,
        error_type: str,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue an error. ``retry_after`` (seconds) sends ``retry-after`` (whole seconds, as
        the API does) and ``retry-after-ms``, which the SDKs prefer: 0.001 makes retries
        instant. Both SDKs ignore a zero wait and fall back to their own backoff (≥ 0.375 s)."""
        request_id = self.next_id("req_fake_")
        headers = {"request-id": request_id}
        if retry_after is not None:
            headers["retry-after"] = str(math.ceil(retry_after))
            headers["retry-after-ms"] = str(retry_after * 1000)
        body = self.error_body(status, error_type, message or ERROR_MESSAGES.get(error_type, ""))
        body["request_id"] = request_id
        self.push(PlannedResponse(status, body, headers, delay_s))

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_type, "message": message}}


def message_events(message: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The server-sent events the API streams for ``message`` (a whole Messages reply)."""
    usage = dict(message["usage"])
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "tool_use":
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            opening = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        events += [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": stop,
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events
