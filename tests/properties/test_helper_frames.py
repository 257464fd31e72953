"""Property-based: whatever a sandbox's helper sends back (the user's code shares its process,
so it may be anything), the host's channel returns a well-formed reply or raises one of the
errors the sandboxes turn into data (``ProtocolError``, end of stream), never another
exception, and never waits for a body longer than it accepts."""

from __future__ import annotations

import socket

import anyio
import anyio.abc
from hypothesis import given, settings
from hypothesis import strategies as st

from execloop.errors import ProtocolError
from execloop.sandboxes import helper
from execloop.sandboxes.channel import HelperChannel

MAX_BODY = 4096
EXPECTED = (ProtocolError, anyio.EndOfStream, anyio.IncompleteRead)
# a prefix with lengths from tiny to absurd, then bytes that may or may not be its header
FRAMED = st.builds(
    lambda header, body, text, tail: helper.FRAME_PREFIX.pack(header, body) + text + tail,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=64) | st.sampled_from([b"{}", b'{"ok":true}', b"[]", b"null", b"{"]),
    st.binary(max_size=64),
)


def _read(wire: bytes) -> tuple[str, object]:
    async def main() -> tuple[str, object]:
        ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        channel = await HelperChannel.connect(await anyio.abc.UNIXSocketStream.from_socket(ours))
        try:
            peer.sendall(wire)
            peer.close()  # all it will ever send: a reader waiting for more would hang
            with anyio.fail_after(10):
                return "reply", await channel.read_reply(max_body=MAX_BODY)
        except EXPECTED as exc:
            return "refused", exc
        finally:
            await channel.aclose()

    return anyio.run(main)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=256) | FRAMED)
def test_anything_from_the_helper_is_a_reply_or_a_refusal(wire: bytes) -> None:
    kind, value = _read(wire)
    if kind == "reply":
        header, body = value  # type: ignore[misc]
        assert isinstance(header, dict) and isinstance(body, bytes)
        assert len(body) <= MAX_BODY
