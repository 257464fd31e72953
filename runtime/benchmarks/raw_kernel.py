"""A plain ``AsyncKernelClient`` on an ipykernel started by hand in a container of the image
(ipc transport in a mounted folder, ``--network none``, uid 1000): the raw kernel execloop's
jupyter backend is compared with, and a peer of ``execloop bench sandboxes``."""

from __future__ import annotations

import functools
import json
import os
import queue
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.to_thread

__all__ = [
    "docker_raw_kernel",
    "raw_kernel_answers",
    "raw_kernel_files",
    "raw_kernel_run",
    "ready_or_stop",
]

RAW_KERNEL_PYTHON = "/opt/execloop/venv/bin/python"
SLEEPER = {"detach": True, "network_mode": "none", "init": True}


async def raw_kernel_run(kc: Any, code: str) -> str:
    """Execute ``code`` through a plain AsyncKernelClient: iopub until idle, then the reply."""
    msg_id = kc.execute(code, store_history=False, allow_stdin=False)
    out = ""
    while True:
        msg = await kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out += msg["content"]["text"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while (await kc.get_shell_msg(timeout=30))["parent_header"].get("msg_id") != msg_id:
        pass
    return out


def raw_kernel_files(folder: Path) -> dict[str, Any]:
    """Both connection files: the host's (ipc sockets in ``folder``), the kernel's (its mount)."""
    from jupyter_client.connect import write_connection_file

    folder.mkdir(mode=0o700)
    _, info = write_connection_file(
        str(folder / "host.json"),
        ip=str(folder / "kernel"),
        transport="ipc",
        key=os.urandom(16).hex().encode(),
    )
    (folder / "kernel.json").write_text(json.dumps({**info, "ip": "/run/execloop/kernel"}))
    for path in (folder, folder / "kernel.json"):
        os.chown(path, 1000, 1000)
    return dict(info)


async def raw_kernel_answers(kc: Any) -> bool:
    msg_id = kc.kernel_info()
    try:
        while (await kc.get_shell_msg(timeout=1))["parent_header"].get("msg_id") != msg_id:
            pass
        while True:
            msg = await kc.get_iopub_msg(timeout=1)
            if msg["msg_type"] == "iopub_welcome" or msg["parent_header"].get("msg_id") == msg_id:
                return True
    except queue.Empty:
        return False


async def docker_raw_kernel(client: Any, image: str, folder: Path, labels: dict[str, str]) -> Any:
    """A kernel started the simple way in a container; returns (client, its cleanup)."""
    from jupyter_client.asynchronous.client import AsyncKernelClient

    info = raw_kernel_files(folder)
    command = [RAW_KERNEL_PYTHON, "-m", "ipykernel_launcher", "-f", "/run/execloop/kernel.json"]
    mount = {str(folder): {"bind": "/run/execloop", "mode": "rw"}}
    run = functools.partial(
        client.containers.run,
        image,
        command,
        volumes=mount,
        user="1000:1000",
        labels=labels,
        **SLEEPER,
    )
    container = await anyio.to_thread.run_sync(run)
    kc = AsyncKernelClient()
    kc.load_connection_info(cast(Any, info))  # a plain dict, as write_connection_file gives
    kc.start_channels(hb=False)

    async def stop() -> None:
        kc.stop_channels()
        await anyio.to_thread.run_sync(lambda: container.remove(force=True))

    await ready_or_stop(kc, stop)
    return kc, stop


async def ready_or_stop(kc: Any, stop: Callable[[], Awaitable[None]]) -> None:
    """Wait (60 s at most) until the kernel answers ``kernel_info`` and iopub delivers; stop
    it if it never does."""
    try:
        with anyio.fail_after(60):
            while not await raw_kernel_answers(kc):
                pass
    except BaseException:
        await stop()
        raise
