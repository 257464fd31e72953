"""Live output: the helper's output frames, the host's bounded delivery, the fake's contract."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from execloop.errors import ConfigError, ProtocolError
from execloop.sandboxes import helper
from execloop.sandboxes.channel import HelperChannel
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.streaming import OutputStream
from execloop.testing import FakeSandbox

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def channel_and_peer() -> AsyncIterator[tuple[HelperChannel, socket.socket]]:
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = await HelperChannel.connect(await anyio.abc.UNIXSocketStream.from_socket(ours))
    try:
        yield channel, peer
    finally:
        await channel.aclose()
        peer.close()


def test_an_output_frame_is_a_header_naming_the_stream_and_the_bytes_as_body() -> None:
    frame = helper.encode_output("stderr", b"oops\n")
    header_len, body_len = helper.FRAME_PREFIX.unpack_from(frame)
    start = helper.FRAME_PREFIX.size
    assert frame[start : start + header_len] == b'{"op":"output","stream":"stderr"}'
    assert body_len == 5 and frame[start + header_len :] == b"oops\n"


async def test_output_frames_reach_the_callback_in_order_before_the_reply() -> None:
    seen: list[tuple[str, bytes]] = []
    wire = (
        helper.encode_output("stdout", b"a\n")
        + helper.encode_output("stderr", b"warn\n")
        + helper.encode_output("stdout", b"b\n")
        + helper.encode_frame({"ok": True, "exit_code": 0})
    )
    async with channel_and_peer() as (channel, peer):
        for i in range(0, len(wire), 5):  # split across every boundary
            peer.sendall(wire[i : i + 5])
        deadline = anyio.current_time() + 30
        reply = await channel.request_streaming(
            {"op": "exec", "stream": True},
            deadline=deadline,
            on_output=lambda stream, data: seen.append((stream, data)),
        )
        request = peer.recv(4096)
    assert reply == ({"ok": True, "exit_code": 0}, b"")
    assert seen == [("stdout", b"a\n"), ("stderr", b"warn\n"), ("stdout", b"b\n")]
    assert b'"stream":true' in request


@pytest.mark.parametrize(
    "frame",
    [
        helper.encode_frame({"op": "output", "stream": "stdin"}, b"x"),
        helper.encode_frame({"ok": True}, b"a body where none is due"),
    ],
)
async def test_a_bad_output_frame_is_a_protocol_error(frame: bytes) -> None:
    async with channel_and_peer() as (channel, peer):
        peer.sendall(frame)
        with pytest.raises(ProtocolError):
            await channel.request_streaming(
                {"op": "exec"}, deadline=anyio.current_time() + 30, on_output=lambda *_: None
            )


def test_delivery_is_decoded_across_pieces_and_bounded_per_stream() -> None:
    seen: dict[str, str] = {"stdout": "", "stderr": ""}
    stream = OutputStream(lambda name, text: seen.__setitem__(name, seen[name] + text), limit=8)
    data = "é€".encode()  # 2 + 3 bytes, fed one byte at a time
    for i in range(len(data)):
        stream.feed("stdout", data[i : i + 1])
    stream.feed("stdout", b"abcdef")  # 5 + 6 bytes: only 3 more are delivered
    stream.feed("stdout", b"never")
    stream.feed("stderr", b"err\xe2\x82")  # an incomplete character at the end
    stream.close()
    assert seen["stdout"] == "é€abc"
    assert seen["stderr"] == "err\ufffd"


async def test_the_fake_delivers_its_output_at_the_end_bounded() -> None:
    seen: list[tuple[str, str]] = []
    fake = FakeSandbox(
        SandboxSpec(max_output_bytes="1k"), handler=lambda run: "x" * 5000 if run.code else ""
    )
    async with fake as sandbox:
        result = await sandbox.exec("go", on_output=lambda s, t: seen.append((s, t)))
        with pytest.raises(ConfigError, match="on_output must be callable"):
            await sandbox.exec("go", on_output="print")  # type: ignore[arg-type]
    assert result.stdout == "x" * 5000
    assert seen == [("stdout", "x" * 1024)]
