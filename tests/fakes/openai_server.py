"""A loopback fake of an OpenAI-compatible server (``POST /v1/chat/completions``).

Replies have the real ``chat.completion`` shape: ``id``, ``object``, ``created``, ``model``
(echoed from the request unless given), ``choices[0].message`` with ``content`` and
``tool_calls`` (``id``, ``type: function``, ``function.name``, ``function.arguments`` as a JSON
string), ``finish_reason``, and ``usage`` with ``prompt_tokens_details.cached_tokens``.
Errors are ``{"error": {"message", "type", "param", "code"}}`` with ``x-request-id``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from execloop.testing import LoopbackServer, PlannedResponse, RecordedRequest

__all__ = ["DEFAULT_USAGE", "FakeOpenAIServer"]

_CREATED = 1_700_000_000
DEFAULT_USAGE: Mapping[str, int | None] = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "cached_tokens": None,
}


class FakeOpenAIServer(LoopbackServer):
    paths = ("/v1/chat/completions",)

    @property
    def base_url(self) -> str:
        """What to give the SDK (it appends ``/chat/completions``)."""
        return f"{self.origin}/v1"

    def push_reply(
        self,
        *,
        script: str | None = None,
        text: str | None = None,
        usage: Mapping[str, int | None] | None = None,
        with_usage: bool = True,
        tool_name: str = "submit_script",
        arguments: str | None = None,
        finish_reason: str | None = None,
        model: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue a completion: ``text`` as the content, ``script`` as a ``tool_name`` call
        (``arguments`` replaces its JSON, e.g. to send broken JSON). ``usage`` overrides
        ``DEFAULT_USAGE`` (``prompt_tokens``, ``completion_tokens``, ``cached_tokens``; the
        latter ``None`` sends ``prompt_tokens_details: null``, vLLM's default);
        ``with_usage=False`` omits ``usage``, as some servers do."""
        calls = []
        if script is not None or arguments is not None:
            calls.append(
                {
                    "id": self.next_id("call_fake_"),
                    "type": "function",
                    "function": {
                        "name": tool_name,
                        "arguments": arguments
                        if arguments is not None
                        else json.dumps({"script": script}),
                    },
                }
            )
        numbers = {**DEFAULT_USAGE, **(usage or {})}
        prompt, completion = numbers["prompt_tokens"] or 0, numbers["completion_tokens"] or 0
        cached = numbers["cached_tokens"]
        usage_json = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": None
            if cached is None
            else {"cached_tokens": cached, "audio_tokens": 0},
        }
        completion_id = self.next_id("chatcmpl-fake")

        def body(request: RecordedRequest) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": _CREATED,
                "model": model or (request.body or {}).get("model", "fake-model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": text,
                            "refusal": None,
                            "tool_calls": calls or None,
                        },
                        "logprobs": None,
                        "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
                    }
                ],
                "system_fingerprint": None,
                **({"usage": usage_json} if with_usage else {}),
            }

        headers = {"x-request-id": self.next_id("req_fake_")}
        self.push(PlannedResponse(200, body, headers, delay_s))

    def push_error(
        self,
        status: int,
        error_type: str,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue an error; ``retry_after`` as in ``FakeAnthropicServer.push_error``."""
        headers = {"x-request-id": self.next_id("req_fake_")}
        if retry_after is not None:
            headers["retry-after"] = str(math.ceil(retry_after))
            headers["retry-after-ms"] = str(retry_after * 1000)
        body = self.error_body(status, error_type, message or f"fake {error_type}")
        body["error"]["code"] = code
        self.push(PlannedResponse(status, body, headers, delay_s))

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": error_type, "param": None, "code": None}}
