"""The physical floor of a stateful exec: a minimal Python REPL in a container of the sandbox's
image and hardening (``container_request``), reading length-prefixed code and writing
length-prefixed output, with the leanest asyncio client possible (imported by sandbox.py).

Two transports: ``stdio`` (``docker run -i``: the code goes through ``docker attach``, as the
issue's floor), and ``socket`` (the REPL connects to a Unix socket in the mounted control
folder, as execloop's helper does: the like-for-like floor of execloop's own transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import docker.errors

from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.placements.container import container_request, run_as_ids

__all__ = ["FLOOR_SOCKET", "FLOOR_STDIO", "FloorRepl", "floor_pair", "start_floor"]

FLOOR_STDIO, FLOOR_SOCKET = "floor: stdio REPL (docker attach)", "floor: REPL on a Unix socket"
_CONTROL = "/run/execloop"
# The REPL: one namespace, stdout captured per exec, nothing else (no limits, no checks).
REPL = """\
import contextlib, io, os, socket, sys
if len(sys.argv) > 1:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sys.argv[1])
    rfd = wfd = conn.fileno()
else:
    rfd, wfd = 0, 1
ns, buf = {"__name__": "__main__"}, b""
while True:
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = os.read(rfd, 65536)
        if not chunk:
            sys.exit(0)
        buf += chunk
    size = int.from_bytes(buf[:4], "big")
    code, buf = buf[4 : 4 + size], buf[4 + size :]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, ns)
    data = out.getvalue().encode()
    os.write(wfd, len(data).to_bytes(4, "big") + data)
"""


class _Replies(asyncio.Protocol):
    """Length-prefixed replies; with ``multiplexed``, unwrapped from Docker's attach framing
    (8-byte headers: stream type, 3 zero bytes, big-endian length)."""

    def __init__(self, *, multiplexed: bool) -> None:
        self.multiplexed = multiplexed
        self.raw = bytearray()
        self.data = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self.stderr = bytearray()
        self.lost: str | None = None  # why the connection ended (then every exec fails at once)

    def data_received(self, data: bytes) -> None:
        if self.multiplexed:
            self.raw += data
            while len(self.raw) >= 8:
                size = int.from_bytes(self.raw[4:8], "big")
                if len(self.raw) < 8 + size:
                    break
                target = self.data if self.raw[0] == 1 else self.stderr
                target += self.raw[8 : 8 + size]
                del self.raw[: 8 + size]
        else:
            self.data += data
        self._deliver()

    def _deliver(self) -> None:
        if self.waiter is None or len(self.data) < 4:
            return
        size = int.from_bytes(self.data[:4], "big")
        if len(self.data) >= 4 + size:
            reply = bytes(self.data[4 : 4 + size])
            del self.data[: 4 + size]
            self.waiter.set_result(reply)
            self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = f"the floor REPL went away: {self.stderr.decode(errors='replace')[-500:]}"
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(self.lost))


class FloorRepl:
    """One floor container and its client."""

    def __init__(self, container: Any, transport: asyncio.Transport, protocol: _Replies) -> None:
        self.container = container
        self.transport = transport
        self.protocol = protocol

    async def exec(self, code: str) -> bytes:
        if self.protocol.lost is not None:  # lost between two execs: no reply will ever come
            raise ConnectionError(self.protocol.lost)
        encoded = code.encode()
        waiter = asyncio.get_running_loop().create_future()
        self.protocol.waiter = waiter
        self.transport.write(len(encoded).to_bytes(4, "big") + encoded)
        reply: bytes = await waiter
        return reply

    async def aclose(self) -> None:
        self.transport.close()
        with contextlib.suppress(docker.errors.NotFound):  # removed already: what aclose wants
            await anyio.to_thread.run_sync(lambda: self.container.remove(force=True))


def _floor_request(image: str, control: Path, labels: dict[str, str], via: str) -> dict[str, Any]:
    spec = SandboxSpec()
    uid, gid = run_as_ids(spec)
    request = container_request(
        spec,
        image=image,
        own_image=True,
        control_dir=control,
        labels=labels,
        user=f"{uid}:{gid}",
    )
    python = request["command"][0]  # the image's interpreter, as the helper runs
    argv = [python, "-c", REPL]
    if via == "socket":
        argv.append(f"{_CONTROL}/floor.sock")
    return {**request, "command": argv, "stdin_open": via == "stdio"}


async def start_floor(client: Any, image: str, labels: dict[str, str], *, via: str) -> FloorRepl:
    """A started floor container of ``image``, hardened like a sandbox; ``via`` stdio/socket."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="execloop-bench-floor-") as scratch:
        control = Path(scratch)
        os.chmod(control, 0o755)
        request = _floor_request(image, control, labels, via)
        container = await anyio.to_thread.run_sync(lambda: client.containers.create(**request))
        try:
            if via == "stdio":
                params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                attached = await anyio.to_thread.run_sync(
                    lambda: client.api.attach_socket(container.id, params=params)
                )
                raw = getattr(attached, "_sock", attached)
                sock = socket.socket(fileno=os.dup(raw.fileno()))
                attached.close()
                await anyio.to_thread.run_sync(container.start)
            else:
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(str(control / "floor.sock"))
                os.chmod(control / "floor.sock", 0o777)
                listener.listen(1)
                listener.settimeout(30)
                await anyio.to_thread.run_sync(container.start)
                sock, _ = await anyio.to_thread.run_sync(listener.accept)
                listener.close()
            sock.setblocking(False)
            protocol = _Replies(multiplexed=via == "stdio")
            transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            await anyio.to_thread.run_sync(lambda: container.remove(force=True))
            raise
    floor = FloorRepl(container, transport, protocol)
    if await floor.exec("print(1+1)") != b"2\n":
        raise RuntimeError("the floor REPL answered wrongly")
    return floor


async def floor_pair(floors: list[FloorRepl], code: str, k: int) -> float:
    """Execs per second of ``floors`` each running ``k`` execs at once."""

    async def run(floor: FloorRepl) -> None:
        for _ in range(k):
            await floor.exec(code)

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for floor in floors:
            group.start_soon(run, floor)
    return len(floors) * k / (time.perf_counter() - start)
