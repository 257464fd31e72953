"""OpenAI-compatible chat completions (vLLM, Ollama, llama.cpp, OpenAI) through ``AsyncOpenAI``.

The system blocks are joined into one system message (several system messages, or one that is
not first, break some servers' chat templates) and ``submit_script`` is sent as a function
tool. Servers cache prefixes on their own; ``prompt_tokens_details.cached_tokens``, when
reported, becomes ``cache_read_input_tokens`` and is subtracted from ``input_tokens`` so the
fields mean what Anthropic's mean (``Usage.total_input_tokens`` is then ``prompt_tokens``).

Retries are the SDK's (same policy as the Anthropic adapter's, except that a ``retry-after``
above 120 s is not waited for), and what is left becomes ``ModelError`` in ``_model_error``.
"""

from __future__ import annotations

import json
import logging
import os

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)
from openai.types.completion_usage import CompletionUsage

from execloop.errors import ConfigError, ModelError
from execloop.runtime.ledger import Usage
from execloop.runtime.models import _sdk
from execloop.runtime.models.base import SUBMIT_SCRIPT_TOOL, ModelReply, ModelRequest

__all__ = ["DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT_S", "NO_API_KEY", "OpenAIModel", "usage_of"]

log = logging.getLogger("execloop.runtime.models.openai")

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MAX_RETRIES = 4
# Local servers ignore the key, but the SDK refuses to build a client without one.
NO_API_KEY = "not-needed"


class OpenAIModel:
    """``Model`` for an OpenAI-compatible ``/chat/completions`` endpoint.

    Give either ``client`` (an ``openai.AsyncOpenAI`` you own and close) or the settings to
    build one: ``base_url`` such as ``http://127.0.0.1:8000/v1`` (fallback: env
    ``OPENAI_BASE_URL``, else OpenAI's), ``api_key`` (fallback: env ``OPENAI_API_KEY``, else
    ``NO_API_KEY``), ``timeout`` per attempt in seconds and ``max_retries``.
    """

    def __init__(
        self,
        *,
        model: str,
        client: openai.AsyncOpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIModel needs a model name, e.g. model='qwen2.5-coder'")
        if timeout <= 0 or max_retries < 0:
            raise ConfigError(
                f"OpenAIModel: timeout must be > 0 and max_retries >= 0 "
                f"(got timeout={timeout}, max_retries={max_retries})"
            )
        self._model = model
        self._owns_client = client is None
        if client is not None:
            if api_key is not None or base_url is not None:
                raise ConfigError("OpenAIModel: pass client= or api_key=/base_url=, not both")
            self._client = client
            return
        self._client = openai.AsyncOpenAI(
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or NO_API_KEY,
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
            timeout=timeout,
            max_retries=max_retries,
        )

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    @property
    def scripted(self) -> bool:
        return False

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client every request goes through (the classic agent sends its own)."""
        return self._client

    def error_of(self, exc: openai.OpenAIError) -> ModelError:
        """The ``ModelError`` for an SDK error, mapped in the one place this adapter does it."""
        return self._model_error(exc)

    async def complete(self, request: ModelRequest) -> ModelReply:
        messages: list[ChatCompletionMessageParam] = []
        if request.system:
            messages.append({"role": "system", "content": "\n\n".join(request.system)})
        for message in request.messages:
            if message.role == "user":
                messages.append({"role": "user", "content": message.content})
            else:
                messages.append({"role": "assistant", "content": message.content})
        tools: list[ChatCompletionFunctionToolParam] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.tools
        ]
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                model=self._model,
                messages=messages,
                # max_tokens, not max_completion_tokens: the one every local server knows.
                max_tokens=request.max_tokens,
                tools=tools or openai.omit,
                tool_choice="auto" if tools else openai.omit,
            )
            completion = raw.parse()
        except openai.OpenAIError as exc:
            raise self._model_error(exc) from exc
        attempts = raw.retries_taken + 1
        if attempts > 1:
            log.info("%s: reply after %d attempts", self.name, attempts)
        try:
            # The SDK does not validate response bodies, so a broken server shows up here.
            return self._reply(completion, attempts=attempts)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(f"{self.name}: malformed response: {exc}") from exc

    async def aclose(self) -> None:
        """Close the HTTP client if this model built it (an injected one is the caller's)."""
        if self._owns_client:
            await self._client.close()

    async def __aenter__(self) -> OpenAIModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _reply(self, completion: object, *, attempts: int) -> ModelReply:
        if not isinstance(completion, ChatCompletion) or not completion.choices:
            raise ValueError("no choices in the response")
        choice = completion.choices[0]
        calls = [
            call
            for call in choice.message.tool_calls or []
            if isinstance(call, ChatCompletionMessageFunctionToolCall)
            and call.function.name == SUBMIT_SCRIPT_TOOL.name
        ]
        return ModelReply(
            text=choice.message.content or "",
            script=_script(calls[0].function.arguments) if calls else None,
            usage=usage_of(completion.usage),
            model=completion.model or self._model,
            stop_reason=choice.finish_reason,
            attempts=attempts,
        )

    def _model_error(self, exc: openai.OpenAIError) -> ModelError:
        where = f"{self.name} at {self._client.base_url}"
        tries = _sdk.attempts(self._client.max_retries + 1)
        if isinstance(exc, openai.APIStatusError):
            # The SDK hands over the inner {"message", "type", "code"} object as the body.
            body = exc.body if isinstance(exc.body, dict) else {}
            kind = body.get("type") or body.get("code") or "error"
            text = body.get("message") or exc.message
            message = f"{where}: HTTP {exc.status_code} {kind}: {text}"
            if _sdk.sdk_retries(exc.status_code):
                message += f" (gave up after {tries})"
            if exc.request_id:
                message += f" [request-id {exc.request_id}]"
            return ModelError(message, status_code=exc.status_code)
        if isinstance(exc, openai.APITimeoutError):
            timeout = self._client.timeout
            return ModelError(f"{where}: timed out (timeout {timeout} s) after {tries}")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return ModelError(f"{where}: connection failed after {tries}: {cause}")
        return ModelError(f"{where}: malformed response or client error: {exc}")


def _script(arguments: str) -> str | None:
    """The ``script`` argument; small local models sometimes emit broken JSON, which counts as
    no script (the loop asks again) rather than as a provider failure."""
    try:
        value = json.loads(arguments).get("script")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str):
        log.warning("submit_script call without a string 'script': %.200r", arguments)
        return None
    return value


def usage_of(usage: CompletionUsage | None) -> Usage:
    if usage is None:  # some servers omit it; the request still happened
        return Usage(requests=1)
    details = usage.prompt_tokens_details
    cached = min((details.cached_tokens or 0) if details else 0, usage.prompt_tokens)
    return Usage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=cached,
        requests=1,
    )
