"""Host memory of large transfers: a 1 GiB host folder up into each backend and back down.

    .venv/bin/python bench/transfer.py [--gib 1] [--backends docker,local,...]

For each backend it prints the transfer's size, the host process's peak RSS growth while it ran
(sampled every 5 ms) and their ratio. Transfers stream in chunks, so the growth stays a few MiB
whatever the size; the in-memory transfers they replaced held the archive several times over
(a ratio above 3). The host file and the copy back live on a tmpfs (/dev/shm), which is page
cache, not this process's RSS; the sandbox's workspace is sized to hold the data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.contract.backends import BACKEND_SPECS, make_sandbox, peak_rss_growth

_MIB = 1 << 20


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True)
    block = os.urandom(_MIB)
    with path.open("wb") as handle:
        for _ in range(size // _MIB):
            handle.write(block)


async def one(backend: str, size: int, host: Path) -> tuple[float, float, float]:
    """``(RSS growth in MiB, upload s, download s)`` of a ``size``-byte round trip."""
    fields: dict[str, Any] = {}
    if not backend.startswith("jupyter"):  # the workspace (a tmpfs) and file size caps
        fields = {"workspace_size": size + 256 * _MIB, "memory": size + 512 * _MIB}
    workspace = None
    if backend in ("jupyter-docker", "jupyter-bubblewrap", "restricted"):  # a host folder
        workspace = Path(tempfile.mkdtemp(prefix="bench-", dir="/dev/shm"))
        if os.geteuid() == 0 and backend != "restricted":
            os.chown(workspace, 1000, 1000)
        fields["workspace_dir"] = workspace
    try:
        async with make_sandbox(backend, **fields) as sandbox:
            with peak_rss_growth() as growth:
                started = time.monotonic()
                await sandbox.upload(host / "in", "data")
                uploaded = time.monotonic()
                copied = await sandbox.download("data", host / f"out-{backend}")
                downloaded = time.monotonic()
        assert sum(p.stat().st_size for p in copied) == size
        for path in copied:
            path.unlink()
        return growth() / _MIB, uploaded - started, downloaded - uploaded
    finally:
        if workspace is not None:
            for path in sorted(workspace.rglob("*"), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()
            workspace.rmdir()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--backends", default=",".join(BACKEND_SPECS))
    options = parser.parse_args()
    size = int(options.gib * 1024) * _MIB
    with tempfile.TemporaryDirectory(dir="/dev/shm") as folder:
        host = Path(folder)
        _write(host / "in" / "big.bin", size)
        print(
            f"{'backend':<20} {'size MiB':>9} {'RSS growth MiB':>15} {'ratio':>7} "
            f"{'up s':>6} {'down s':>7}"
        )
        for backend in options.backends.split(","):
            growth, up, down = await one(backend, size, host)
            print(
                f"{backend:<20} {size / _MIB:>9.0f} {growth:>15.1f} {growth * _MIB / size:>7.3f} "
                f"{up:>6.1f} {down:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    anyio.run(main)
