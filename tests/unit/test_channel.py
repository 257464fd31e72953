"""The host's sockets: private from the first moment, handed to the sandbox's user."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import pytest

from execloop.errors import ProtocolError
from execloop.sandboxes import helper
from execloop.sandboxes.channel import HelperChannel, private_unix_listener
from execloop.sandboxes.guest.framing import Receiver

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("owner", [None, (1000, 1000)])
async def test_listeners_are_mode_0600_and_owned_by_the_sandbox_user(
    tmp_path: Path, owner: tuple[int, int] | None
) -> None:
    os.chmod(tmp_path, 0o711)
    path = tmp_path / "ctl.sock"
    listener = await private_unix_listener(path, owner=owner)
    try:
        info = path.stat()
        async with await anyio.connect_unix(path):
            pass
    finally:
        await listener.aclose()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600  # never group- or world-writable
    expected = owner if owner is not None and os.geteuid() == 0 else (os.geteuid(), os.getegid())
    assert (info.st_uid, info.st_gid) == expected
    assert os.listdir(tmp_path) == ["ctl.sock"]  # no staging folder left


# -- frames: the channel parses whole frames out of whatever pieces the socket delivers -------
@asynccontextmanager
async def channel_and_peer() -> AsyncIterator[tuple[HelperChannel, socket.socket]]:
    """A channel on one end of a socket pair; the other end, blocking, plays the helper."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    channel = await HelperChannel.connect(await anyio.abc.UNIXSocketStream.from_socket(ours))
    try:
        yield channel, peer
    finally:
        await channel.aclose()
        peer.close()


async def test_frames_are_whole_however_the_bytes_arrive() -> None:
    frames = [
        helper.encode_frame({"op": "one"}),
        helper.encode_frame({"op": "two", "n": 2}, b"body"),
        helper.encode_chunk(b"x" * 1000),
        helper.encode_frame({"op": "end"}),
    ]
    wire = b"".join(frames)
    async with channel_and_peer() as (channel, peer):
        for i in range(0, len(wire), 7):  # odd-sized pieces, split across every boundary
            peer.sendall(wire[i : i + 7])
            await anyio.lowlevel.checkpoint()
        got = [await channel.read_frame(max_body=4096, chunk_ok=True) for _ in frames]
        peer.sendall(frames[0] + frames[3])  # two frames in one piece
        both = [await channel.read_reply(), await channel.read_reply()]
    assert got == [
        ({"op": "one"}, b""),
        ({"op": "two", "n": 2}, b"body"),
        (None, b"x" * 1000),
        ({"op": "end"}, b""),
    ]
    assert both == [({"op": "one"}, b""), ({"op": "end"}, b"")]


async def test_an_oversized_frame_is_refused_before_its_body_arrives() -> None:
    async with channel_and_peer() as (channel, peer):
        peer.sendall(helper.FRAME_PREFIX.pack(2, 1 << 30) + b"{}")  # announces 1 GiB, sends none
        with pytest.raises(ProtocolError, match="too large"):
            await channel.read_reply(max_body=1024)


async def test_a_chunk_where_a_reply_is_due_is_refused() -> None:
    async with channel_and_peer() as (channel, peer):
        peer.sendall(helper.encode_chunk(b"data"))
        with pytest.raises(ProtocolError, match="chunk"):
            await channel.read_reply(max_body=1024)


@pytest.mark.parametrize(
    ("sent", "error"), [(b"", anyio.EndOfStream), (b"\0\0", anyio.IncompleteRead)]
)
async def test_a_vanished_helper_ends_the_stream(sent: bytes, error: type[Exception]) -> None:
    async with channel_and_peer() as (channel, peer):
        peer.sendall(sent)
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(error):
            await channel.read_reply()


async def test_a_reply_not_in_by_the_deadline_is_none_and_one_in_time_is_returned() -> None:
    async with channel_and_peer() as (channel, peer):
        loop = asyncio.get_running_loop()
        late = await channel.request({"op": "ping"}, deadline=loop.time() + 0.05)
        assert peer.recv(1024).endswith(b'{"op":"ping"}')
        peer.sendall(helper.encode_frame({"ok": True}))
        in_time = await channel.request({"op": "ping"}, deadline=loop.time() + 30)
    assert (late, in_time) == (None, ({"ok": True}, b""))


async def test_reading_pauses_while_unread_frames_pile_up() -> None:
    """A helper that streams faster than the host consumes never fills host memory: past the
    high-water mark the channel stops reading the socket until frames are taken out."""
    chunk = helper.encode_chunk(b"z" * helper.CHUNK_BYTES)
    count = 8
    wire = chunk * count
    async with channel_and_peer() as (channel, peer):
        peer.setblocking(False)
        sent = 0
        with anyio.fail_after(60):
            while not channel._frames.read_paused:
                with contextlib.suppress(BlockingIOError):
                    sent += peer.send(wire[sent : sent + 65536])
                await anyio.sleep(0.001)  # the event loop reads meanwhile
        buffered = len(channel._frames.buffer)
        peer.setblocking(True)
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, peer.sendall, wire[sent:])
            bodies = [
                await channel.read_frame(max_body=helper.CHUNK_BYTES, chunk_ok=True)
                for _ in range(count)
            ]
    assert sent < len(wire)  # it paused with most of the stream still to come
    assert buffered <= 3 * helper.CHUNK_BYTES + (1 << 18)  # the mark, plus one read at most
    assert all(body == (None, b"z" * helper.CHUNK_BYTES) for body in bodies)


# -- the compact exec: two structs instead of JSON, checked like any reply --------------------
def _compact_reply(
    *, reason: int = 0, out: bytes = b"2\n", err: bytes = b"", out_len: int = -1
) -> bytes:
    header = helper.EXEC_REPLY.pack(
        2, 3, reason, 0b10, 0.25, -1, len(out) if out_len < 0 else out_len
    )
    return helper.FRAME_PREFIX.pack(len(header), len(out) + len(err)) + header + out + err


async def test_a_compact_exec_reply_reads_as_its_json_form() -> None:
    async with channel_and_peer() as (channel, peer):
        peer.sendall(_compact_reply(out="é\n".encode(), err=b"\xff"))
        reply, body = await channel.read_reply(max_body=helper.exec_reply_bound(1024))
    assert body == b""
    assert reply == {
        "ok": True,
        "exit_code": 3,
        "exit_reason": "ok",
        "stdout": "é\n",
        "stderr": "\ufffd",  # bytes that are not UTF-8 are shown as the helper would
        "stdout_truncated": False,
        "stderr_truncated": True,
        "duration_s": 0.25,
        "peak_memory_bytes": None,
    }


@pytest.mark.parametrize(
    "frame",
    [
        _compact_reply(reason=len(helper.EXIT_REASONS)),  # no such exit reason
        _compact_reply(out_len=100),  # more stdout than the body holds
    ],
)
async def test_a_malformed_compact_reply_is_a_protocol_error(frame: bytes) -> None:
    async with channel_and_peer() as (channel, peer):
        peer.sendall(frame)
        with pytest.raises(ProtocolError, match="invalid reply"):
            await channel.read_reply(max_body=1024)


def test_a_compact_exec_request_keeps_the_code_exactly() -> None:
    code = "print('\ud800 lone surrogate', 'ünïcode')"
    frame = helper.encode_exec_request(code, keep=7, limit=9, keep_background=True)
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, peer:
        peer.sendall(frame)
        header, body = Receiver(ours).frame()
    assert body == b""
    assert header == {
        "op": "exec",
        "code": code,
        "keep": 7,
        "limit": 9,
        "keep_background": True,
        "compact": True,
    }
