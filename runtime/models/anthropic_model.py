"""The Anthropic Messages API (and Anthropic-compatible providers) through ``AsyncAnthropic``.

Prompt caching: the stable prefix is tools, then system (the API's cache order), so one
``cache_control`` breakpoint on the last system block caches both; without system blocks it
goes on the last tool. Prefixes shorter than the model's minimum (1024 tokens for most
models) are silently not cached: the usage then shows no cache tokens, which is correct.

Retries are the SDK's own loop (``anthropic/_base_client.py``): 408, 409, 429 and every 5xx
(529 ``overloaded_error`` included), timeouts and connection errors, with exponential backoff
(0.5 s doubling to 8 s, jittered) unless the response says ``retry-after-ms``/``retry-after``,
which it honours as given, uncapped. What is left after ``max_retries`` becomes ``ModelError``
in ``_model_error``, the one place errors are mapped.

Usage is the successful response's: failed attempts are not billed, so ``requests`` is 1 and
``ModelReply.attempts`` tells how many HTTP attempts the reply took.
"""

from __future__ import annotations

import logging
import os

import anthropic
from anthropic.types import MessageParam, TextBlock, TextBlockParam, ToolParam, ToolUseBlock

from execloop.errors import ConfigError, ModelError
from execloop.runtime.ledger import Usage
from execloop.runtime.models import _sdk
from execloop.runtime.models.base import SUBMIT_SCRIPT_TOOL, Message, ModelReply, ModelRequest

__all__ = [
    "AnthropicModel",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "usage_of",
]

log = logging.getLogger("execloop.runtime.models.anthropic")

DEFAULT_TIMEOUT_S = 600.0
# The SDK's default is 2; an agent loop meets 429/529 often enough to wait a little longer.
DEFAULT_MAX_RETRIES = 4


class AnthropicModel:
    """``Model`` for the Messages API.

    Give either ``client`` (an ``anthropic.AsyncAnthropic`` you own and close) or the settings
    to build one: ``api_key`` (fallback: env ``ANTHROPIC_API_KEY``), ``base_url`` (fallback: env
    ``ANTHROPIC_BASE_URL``, else api.anthropic.com; set it for compatible providers such as
    MiniMax), ``timeout`` per attempt in seconds and ``max_retries``.
    """

    def __init__(
        self,
        *,
        model: str,
        client: anthropic.AsyncAnthropic | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if not model:
            raise ConfigError("AnthropicModel needs a model name, e.g. model='claude-sonnet-4-5'")
        if timeout <= 0 or max_retries < 0:
            raise ConfigError(
                f"AnthropicModel: timeout must be > 0 and max_retries >= 0 "
                f"(got timeout={timeout}, max_retries={max_retries})"
            )
        self._model = model
        self._owns_client = client is None
        if client is not None:
            if api_key is not None or base_url is not None:
                raise ConfigError("AnthropicModel: pass client= or api_key=/base_url=, not both")
            self._client = client
            return
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError(
                "AnthropicModel: no API key; pass api_key=... or set ANTHROPIC_API_KEY"
            )
        self._client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
            timeout=timeout,
            max_retries=max_retries,
        )

    @property
    def name(self) -> str:
        return f"anthropic:{self._model}"

    @property
    def scripted(self) -> bool:
        return False

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The SDK client every request goes through (the classic agent sends its own)."""
        return self._client

    def error_of(self, exc: anthropic.AnthropicError) -> ModelError:
        """The ``ModelError`` for an SDK error, mapped in the one place this adapter does it."""
        return self._model_error(exc)

    async def complete(self, request: ModelRequest) -> ModelReply:
        system, tools = _stable_prefix(request)
        messages = [_message(message) for message in request.messages]
        try:
            raw = await self._client.messages.with_raw_response.create(
                model=self._model,
                max_tokens=request.max_tokens,
                system=system or anthropic.omit,
                messages=messages,
                tools=tools or anthropic.omit,
                # "auto", not "any": forcing a tool is refused with extended thinking, and the
                # loop already handles (and corrects) a reply without a script.
                tool_choice={"type": "auto"} if tools else anthropic.omit,
            )
            message = await raw.parse()
        except anthropic.AnthropicError as exc:
            raise self._model_error(exc) from exc
        attempts = raw.retries_taken + 1
        if attempts > 1:
            log.info("%s: reply after %d attempts", self.name, attempts)
        try:
            # The SDK does not validate response bodies, so a broken proxy shows up here.
            return _reply(message, attempts=attempts)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ModelError(f"{self.name}: malformed response: {exc}") from exc

    async def aclose(self) -> None:
        """Close the HTTP client if this model built it (an injected one is the caller's)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> AnthropicModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _model_error(self, exc: anthropic.AnthropicError) -> ModelError:
        where = f"{self.name} at {self._client.base_url}"
        tries = _sdk.attempts(self._client.max_retries + 1)
        if isinstance(exc, anthropic.APIStatusError):
            kind, text = _error_detail(exc.body, exc.message)
            message = f"{where}: HTTP {exc.status_code} {kind}: {text}"
            if _sdk.sdk_retries(exc.status_code):
                message += f" (gave up after {tries})"
            if request_id := exc.response.headers.get("request-id"):
                message += f" [request-id {request_id}]"
            return ModelError(message, status_code=exc.status_code)
        if isinstance(exc, anthropic.APITimeoutError):
            timeout = self._client.timeout
            return ModelError(f"{where}: timed out (timeout {timeout} s) after {tries}")
        if isinstance(exc, anthropic.APIConnectionError):
            cause = exc.__cause__ or exc
            return ModelError(f"{where}: connection failed after {tries}: {cause}")
        return ModelError(f"{where}: malformed response or client error: {exc}")


def _stable_prefix(request: ModelRequest) -> tuple[list[TextBlockParam], list[ToolParam]]:
    system: list[TextBlockParam] = [{"type": "text", "text": block} for block in request.system]
    tools: list[ToolParam] = [
        {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
        for tool in request.tools
    ]
    if system:
        system[-1]["cache_control"] = {"type": "ephemeral"}
    elif tools:
        tools[-1]["cache_control"] = {"type": "ephemeral"}
    return system, tools


def _message(message: Message) -> MessageParam:
    if message.role == "user":  # spelled per role: the TypedDicts need literal roles
        return {"role": "user", "content": message.content}
    return {"role": "assistant", "content": message.content}


def _reply(message: object, *, attempts: int) -> ModelReply:
    if not isinstance(message, anthropic.types.Message):  # e.g. a JSON string
        raise TypeError(f"expected a message object, got {type(message).__name__}")
    texts = [block.text for block in message.content if isinstance(block, TextBlock)]
    calls = [
        block
        for block in message.content
        if isinstance(block, ToolUseBlock) and block.name == SUBMIT_SCRIPT_TOOL.name
    ]
    script = None
    if calls:  # the first call wins; one script per turn
        value = calls[0].input.get("script")
        if isinstance(value, str):
            script = value
        else:
            log.warning("submit_script call without a string 'script': %r", calls[0].input)
    return ModelReply(
        text="\n".join(texts),
        script=script,
        usage=usage_of(message.usage),
        model=message.model,
        stop_reason=message.stop_reason,
        attempts=attempts,
    )


def usage_of(usage: anthropic.types.Usage) -> Usage:
    """One response's usage (cache fields may be null from compatible providers)."""
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        requests=1,
    )


def _error_detail(body: object, fallback: str) -> tuple[str, str]:
    """``(error type, message)`` from ``{"type": "error", "error": {...}}``; proxies that answer
    with HTML or plain text fall back to the SDK's message."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("type") or "error"), str(error.get("message") or fallback)
    return "error", fallback
