"""Property-based, end to end: whatever bytes reach a real ``ToolBridge``'s socket (attached to
a real ``local`` sandbox), in whatever pieces, the server answers with at most one JSON error
line, runs a tool only for a well-formed, authenticated, allowed and valid call, and goes on
serving. The host side talks to the socket directly: no fuzz input runs anywhere."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execloop.runtime.bridge import ToolBridge, ToolRegistry
from execloop.runtime.bridge.guest import TOKEN_ENV
from execloop.runtime.bridge.server import SOCKET_NAME
from execloop.sandboxes import SandboxSpec, create_sandbox

MAX_REQUEST = 4096
KINDS = {"bad_request", "bad_token", "not_allowed", "bad_arguments", "budget_exhausted"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


class Served:
    def __init__(self, path: Path, token: str, calls: list[tuple[int, int]]) -> None:
        self.path, self.token, self.calls = path, token, calls

    def ask(self, pieces: list[bytes], *, close_write: bool = False) -> bytes:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.path))
            try:
                for piece in pieces:
                    sock.sendall(piece)
                if close_write:
                    sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # one call per connection: the server answered the first line and left
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        return b"".join(chunks)

    def good_call_works(self) -> bool:
        frame = {"token": self.token, "tool": "add", "arguments": {"a": 2, "b": 3}}
        return json.loads(self.ask([json.dumps(frame).encode() + b"\n"])) == {
            "ok": True,
            "result": 5,
        }


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    calls: list[tuple[int, int]] = []
    registry = ToolRegistry()

    @registry.tool
    def add(a: int, b: int) -> int:
        """``a + b``."""
        calls.append((a, b))
        return a + b

    @registry.tool
    def secret() -> str:
        """Never allowed."""
        raise AssertionError("a tool outside the allowlist ran")

    with start_blocking_portal() as portal:
        sandbox = create_sandbox(SandboxSpec(backend="local"))
        bridge = ToolBridge(
            sandbox, registry, allow=["add"], call_budget=10**6, max_request_bytes=MAX_REQUEST
        )
        with (
            portal.wrap_async_context_manager(sandbox),
            portal.wrap_async_context_manager(bridge),
        ):
            shown = portal.call(sandbox.exec, f"import os\nprint(os.environ[{TOKEN_ENV!r}])")
            assert sandbox.control_dir is not None
            yield Served(sandbox.control_dir / SOCKET_NAME, shown.stdout.strip(), calls)


def _one_error_line(reply: bytes) -> dict[str, Any]:
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply[:200]
    decoded = json.loads(reply)
    assert decoded["ok"] is False and decoded["error"]["type"] in KINDS, decoded
    assert decoded["error"]["message"]
    return decoded  # type: ignore[no-any-return]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.binary(max_size=600), min_size=1, max_size=4), newline=st.booleans())
def test_arbitrary_bytes_in_pieces(served: Served, pieces: list[bytes], newline: bool) -> None:
    before = len(served.calls)
    # without a newline the caller leaves after sending: the server must see it go
    reply = served.ask([*pieces, b"\n"] if newline else pieces, close_write=not newline)
    line = b"".join(pieces).split(b"\n", 1)[0] if newline or b"\n" in b"".join(pieces) else None
    if reply:
        _one_error_line(reply)
    else:
        assert line is None  # silence only for a caller that left before ending a line
    assert len(served.calls) == before
    assert served.good_call_works()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.sampled_from(["right", "wrong", "missing", "number"]),
    tool=st.sampled_from(["add", "secret", "ADD", ""]) | st.text(max_size=8),
    arguments=JSON | st.fixed_dictionaries({"a": JSON, "b": JSON}),
)
def test_structured_frames_run_only_valid_calls(
    served: Served, token: str, tool: str, arguments: Any
) -> None:
    frame: dict[str, Any] = {"tool": tool, "arguments": arguments}
    if token != "missing":
        frame["token"] = {"right": served.token, "wrong": served.token[::-1], "number": 7}[token]
    before = len(served.calls)
    reply = json.loads(served.ask([json.dumps(frame).encode() + b"\n"]))
    if reply["ok"]:
        assert token == "right" and tool == "add"
        assert reply["result"] == arguments["a"] + arguments["b"]
        assert served.calls[before:] == [(arguments["a"], arguments["b"])]
    else:
        assert reply["error"]["type"] in KINDS
        assert len(served.calls) == before
    assert served.good_call_works()


def test_a_request_past_the_size_limit_is_refused_and_the_server_goes_on(served: Served) -> None:
    decoded = _one_error_line(served.ask([b"x" * (MAX_REQUEST * 4)]))
    assert decoded["error"]["type"] == "bad_request"
    assert served.good_call_works()
