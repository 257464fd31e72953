"""Property-based: any request line a sandbox can send gets one JSON reply line, never an
exception out of the gate, and only a well-formed, authenticated, allowed call runs a tool."""

from __future__ import annotations

import json
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.bridge.gate import CallGate

TOKEN = "t0ken"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _gate() -> tuple[CallGate, list[Any]]:
    registry = ToolRegistry()
    ran: list[Any] = []

    @registry.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append((a, b))
        return a + b

    gate = CallGate([registry.get("add")], token=TOKEN, call_budget=5, call_timeout_s=5)
    return gate, ran


def _reply(gate: CallGate, line: bytes | None) -> dict[str, Any]:
    raw = anyio.run(gate.handle, line)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1, raw
    reply = json.loads(raw)
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert set(reply["error"]) == {"type", "message"}
        assert reply["error"]["message"]
    return reply


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_get_one_error_reply(line: bytes) -> None:
    gate, ran = _gate()
    reply = _reply(gate, line)
    assert not reply["ok"]
    assert not ran


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["token", "tool", "arguments", "x"]), JSON, max_size=4))
def test_arbitrary_json_requests_never_run_a_tool_unless_well_formed(
    request: dict[str, Any],
) -> None:
    gate, ran = _gate()
    reply = _reply(gate, json.dumps(request).encode())
    well_formed = (
        request.get("token") == TOKEN
        and request.get("tool") == "add"
        and isinstance(request.get("arguments"), dict)
    )
    if not well_formed:
        assert not reply["ok"] and not ran


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), JSON, max_size=3), st.text(max_size=30))
def test_authenticated_calls_with_any_arguments_are_checked(arguments: Any, junk: str) -> None:
    gate, _ = _gate()
    line = json.dumps({"token": TOKEN, "tool": "add", "arguments": arguments}).encode()
    reply = _reply(gate, line)
    valid = set(arguments) == {"a", "b"} and all(type(arguments[k]) is int for k in ("a", "b"))
    assert reply["ok"] == valid
    assert len(gate.trace) == 1  # every call is audited, refused or not
    _reply(gate, junk.encode("utf-8", "surrogatepass"))


def test_an_oversized_request_is_refused() -> None:
    gate, _ = _gate()
    assert _reply(gate, None)["error"]["type"] == "bad_request"


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1))
def test_lone_surrogates_in_arguments_are_refused_cleanly(text: str) -> None:
    gate, ran = _gate()
    escaped = "".join(f"\\u{ord(c):04x}" for c in text)
    line = ('{"token":"' + TOKEN + '","tool":"add","arguments":{"a":"' + escaped + '"}}').encode()
    reply = _reply(gate, line)
    assert not reply["ok"] and not ran
