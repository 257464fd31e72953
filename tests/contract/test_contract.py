"""One contract, the same assertions on every backend.

Backend-specific isolation expectations live in their own files (``test_docker_sandbox.py``,
``test_local_sandbox.py``...) and in the README's isolation table.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from execloop.sandboxes import ExitReason

from .backends import BACKEND_SPECS, leftovers, make_sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture(params=list(BACKEND_SPECS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_state_persists_between_execs(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        first = await sandbox.exec("total = 40\ndef add(x):\n    return total + x")
        second = await sandbox.exec("print(add(2))")
    assert first.exit_reason is ExitReason.OK, first.stderr
    assert second.stdout == "42\n"


async def test_files_in_and_out(backend: str, tmp_path: Path) -> None:
    async with make_sandbox(backend) as sandbox:
        await sandbox.upload({"in/data.txt": "3\n4\n"})
        run = await sandbox.exec(
            "with open('in/data.txt') as f:\n"
            "    values = [int(line) for line in f]\n"
            "with open('out.txt', 'w') as f:\n"
            "    f.write(str(sum(values)))"
        )
        assert run.exit_reason is ExitReason.OK, run.stderr
        assert await sandbox.read_file("out.txt") == b"7"
        manifest = {a.path: a for a in await sandbox.artifacts()}
        copied = await sandbox.download("in", tmp_path / "copy")
    assert set(manifest) >= {"in/data.txt", "out.txt"}
    assert manifest["out.txt"].size_bytes == 1
    assert [p.read_text() for p in copied] == ["3\n4\n"]


async def test_timeout_is_enforced_and_reported(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        started = time.monotonic()
        result = await sandbox.exec("while True:\n    pass", timeout=1.5)
        elapsed = time.monotonic() - started
    assert result.exit_reason is ExitReason.TIMEOUT
    assert elapsed < 4.0


async def test_failures_are_data(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        error = await sandbox.exec("raise ValueError('boom')")
        exited = await sandbox.exec("raise SystemExit(3)")
        after = await sandbox.exec("print('still fine')")
    assert error.exit_reason is ExitReason.ERROR
    assert error.exit_code not in (None, 0)
    assert "ValueError" in error.stderr and "boom" in error.stderr
    assert exited.exit_code == 3
    assert after.stdout == "still fine\n"


async def test_output_is_truncated_with_the_flag_set(backend: str) -> None:
    async with make_sandbox(backend, max_output_bytes="16k") as sandbox:
        result = await sandbox.exec("for i in range(20000):\n    print('line', i)")
    assert result.stdout_truncated
    assert len(result.stdout.encode()) < 17_000
    assert result.stdout.startswith("line 0\n")


async def test_nothing_is_left_running_after_close(backend: str, docker_client: Any) -> None:
    sandbox = make_sandbox(backend)
    async with sandbox:
        await sandbox.exec("x = 1")
        assert leftovers(sandbox.session_id, docker_client), "the marker should be findable"
    assert leftovers(sandbox.session_id, docker_client) == []


@pytest.fixture
def fast_workspace(backend: str) -> Iterator[dict[str, Any]]:
    """Spec fields putting a host-directory workspace on a tmpfs: on this project's test hosts
    ``/tmp`` is a disk on which 100,000 files take minutes to create and remove."""
    if backend not in ("jupyter-docker", "jupyter-bubblewrap", "restricted"):
        yield {}  # the workspace is a tmpfs already
        return
    folder = Path(tempfile.mkdtemp(prefix="contract-", dir="/dev/shm"))
    try:
        if os.geteuid() == 0 and backend != "restricted":
            os.chown(folder, 1000, 1000)
        yield {"workspace_dir": folder}
    finally:
        shutil.rmtree(folder)


async def test_many_small_files_give_a_bounded_manifest(
    backend: str, fast_workspace: dict[str, Any]
) -> None:
    async with make_sandbox(backend, **fast_workspace) as sandbox:
        made = await sandbox.exec(
            "for i in range(100000):\n    open(f'f{i:06d}', 'w').write('ab')", timeout=120
        )
        manifest = await sandbox.manifest()
        listed = await sandbox.artifacts()
        head = await sandbox.manifest(limit=3)
    assert made.ok, made.stderr
    assert (manifest.total_files, manifest.total_bytes) == (100_000, 200_000)
    assert len(manifest.files) == 1000 and manifest.truncated
    assert listed == manifest.files
    assert [a.path for a in head.files] == ["f000000", "f000001", "f000002"]
    assert manifest.summary() == "100000 files, 195.3 KiB (first 1000 listed)"
