"""``CallGate``: what happens to one request line from a sandbox, whatever carried it.

In order: token (``hmac.compare_digest``) → budget (every authenticated call counts, refused or
not: a script looping on a refusal is still looping) → allowlist → the tool's JSON Schema → the
tool under a deadline. Every outcome becomes one ``ToolCallRecord`` in ``trace`` and one reply
line (the wire format is described in ``guest.py``).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import Draft202012Validator, validator_for
from pydantic import BaseModel, ConfigDict

from execloop.runtime.bridge.tool import Tool, ToolFailure
from execloop.runtime.tokens import count_tokens

__all__ = ["CallGate", "TRACE_TEXT_CHARS", "ToolCallRecord", "internal_error_reply"]

_MAX_MESSAGE = 2000
TRACE_TEXT_CHARS = 64 * 1024
_MAX_UNBUDGETED_RECORDS = 100  # refusals outside the budget; past this they are only counted

log = logging.getLogger("execloop.runtime.bridge")


class ToolCallRecord(BaseModel):
    """The audit record of one call (refused ones too); sizes are of the compact JSON."""

    model_config = ConfigDict(frozen=True)

    tool: str
    argument_bytes: int
    result_bytes: int
    # The compact JSON of the arguments (what a classic agent would have emitted) and of the
    # value (what the script got), cut at TRACE_TEXT_CHARS, with their exact token counts;
    # ``text`` is what a classic agent would have read back: the tool's own text rendering.
    arguments: str = ""
    result: str = ""
    argument_tokens: int = 0
    result_tokens: int = 0
    text: str = ""
    text_tokens: int = 0
    duration_s: float
    timestamp: datetime
    error_type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None


class _Refusal(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message[:_MAX_MESSAGE]


class CallGate:
    """Checks, runs and audits calls to ``tools`` for one sandbox."""

    def __init__(
        self, tools: Sequence[Tool], *, token: str, call_budget: int, call_timeout_s: float
    ) -> None:
        self.call_budget = call_budget
        self.call_timeout_s = call_timeout_s
        self.trace: list[ToolCallRecord] = []
        self.calls_used = 0
        self.dropped_records = 0
        self._token = token.encode()
        self._tools = {tool.name: tool for tool in tools}
        self._validators: dict[str, Validator] = {
            tool.name: validator_for(tool.input_schema, default=Draft202012Validator)(
                tool.input_schema
            )
            for tool in tools
        }

    async def handle(self, line: bytes | None) -> bytes:
        """The reply line to one request line (``None``: the request was too large)."""
        started, timestamp = time.perf_counter(), datetime.now(UTC)
        name, argument_text, budgeted = "?", "", False
        try:
            if line is None:
                raise _Refusal("bad_request", "the request is too large")
            request = _parse(line)
            name = str(request.get("tool"))[:200]
            arguments = request.get("arguments", {})
            argument_text = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
            self._authenticate(request.get("token"))
            if self.calls_used >= self.call_budget:
                raise _Refusal(
                    "budget_exhausted",
                    f"call budget of {self.call_budget} exhausted: this sandbox may make "
                    "no more tool calls",
                )
            self.calls_used += 1
            budgeted = True
            tool = self._check(name, request.get("tool"), arguments)
            encoded, text = await self._run(tool, arguments)
        except _Refusal as refusal:
            self._record(name, argument_text, b"", "", started, timestamp, refusal, budgeted)
            error = {"type": refusal.kind, "message": refusal.message}
            return _dumps({"ok": False, "error": error}) + b"\n"
        self._record(name, argument_text, encoded, text, started, timestamp, None, True)
        return b'{"ok":true,"result":' + encoded + b"}\n"

    def _authenticate(self, token: Any) -> None:
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self._token):
            log.warning("tool bridge refused a call: bad token")
            raise _Refusal("bad_token", "bad token: this sandbox's tool bridge refused the call")

    def _check(self, name: str, raw_name: Any, arguments: Any) -> Tool:
        if not isinstance(raw_name, str) or raw_name not in self._tools:
            raise _Refusal(
                "not_allowed",
                f"tool {name!r} is not in this task's allowlist: {sorted(self._tools)}",
            )
        if not isinstance(arguments, dict):
            raise _Refusal("bad_arguments", f"arguments for {name!r} must be a JSON object")
        error = best_match(self._validators[name].iter_errors(arguments))
        if error is not None:
            raise _Refusal(
                "bad_arguments",
                f"arguments for {name!r} do not match its schema: {error.message} "
                f"at {error.json_path}",
            )
        return self._tools[name]

    async def _run(self, tool: Tool, arguments: dict[str, Any]) -> tuple[bytes, str]:
        # move_on_after, not fail_after: a TimeoutError raised by the tool itself is its error.
        with anyio.move_on_after(self.call_timeout_s) as scope:
            try:
                output = await tool.call_output(arguments)
            except ToolFailure as exc:
                raise _Refusal("tool_error", f"tool {tool.name!r} failed: {exc}") from exc
            except Exception as exc:
                raise _Refusal(
                    "tool_error", f"tool {tool.name!r} raised {type(exc).__name__}: {exc}"
                ) from exc
        if scope.cancelled_caught:
            raise _Refusal(
                "timeout", f"tool {tool.name!r} timed out after {self.call_timeout_s:g} s"
            )
        try:
            return _dumps(output.value), output.text
        except (TypeError, ValueError) as exc:
            raise _Refusal(
                "tool_error", f"tool {tool.name!r} returned a value that is not JSON: {exc}"
            ) from exc

    def _record(
        self,
        name: str,
        argument_text: str,
        encoded_result: bytes,
        text: str,
        started: float,
        timestamp: datetime,
        refusal: _Refusal | None,
        budgeted: bool,
    ) -> None:
        # Budgeted calls are always kept; the others (bad token, over budget, malformed) are
        # bounded, so a script looping on a refusal cannot grow the host's memory without end.
        if not budgeted and len(self.trace) - self.calls_used >= _MAX_UNBUDGETED_RECORDS:
            self.dropped_records += 1
            return
        result_text = encoded_result.decode("utf-8", "replace")
        self.trace.append(
            ToolCallRecord(
                tool=name,
                argument_bytes=len(argument_text.encode()),
                result_bytes=len(encoded_result),
                arguments=argument_text[:TRACE_TEXT_CHARS],
                result=result_text[:TRACE_TEXT_CHARS],
                argument_tokens=count_tokens(argument_text),
                result_tokens=count_tokens(result_text),
                text=text[:TRACE_TEXT_CHARS],
                text_tokens=count_tokens(text),
                duration_s=time.perf_counter() - started,
                timestamp=timestamp,
                error_type=refusal.kind if refusal else None,
                error=refusal.message if refusal else None,
            )
        )


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise _Refusal("bad_request", f"the request is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # [[[[... deeper than the parser's stack
        raise _Refusal("bad_request", "the request's JSON is nested too deeply") from exc
    if not isinstance(request, dict):
        raise _Refusal("bad_request", "the request must be a JSON object")
    try:  # JSON may spell lone surrogates (\\ud800); no tool, record or log can hold them
        json.dumps(request, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise _Refusal(
            "bad_request", "the request holds invalid Unicode (a lone surrogate)"
        ) from exc
    return request


def internal_error_reply() -> bytes:
    error = {"type": "internal", "message": "the tool bridge failed; see the host's logs"}
    return _dumps({"ok": False, "error": error}) + b"\n"
