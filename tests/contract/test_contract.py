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

from execloop import ConfigError, SandboxClosedError, run_script_async
from execloop.sandboxes import Capability, ExitReason
from execloop.sandboxes.threads import THREAD_VARIABLES

from .backends import BACKEND_SPECS, leftovers, make_sandbox, peak_rss_growth

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


# restricted has no CPU limit (it refuses cpus) and no os module to read the environment with
@pytest.mark.parametrize("backend", [name for name in BACKEND_SPECS if name != "restricted"])
async def test_thread_pools_are_sized_to_the_cpu_limit_unless_the_env_says(backend: str) -> None:
    async with make_sandbox(backend, cpus=1.5, env={"OMP_NUM_THREADS": "7"}) as sandbox:
        result = await sandbox.exec(
            f"import os\nprint(sorted((n, os.environ.get(n)) for n in {THREAD_VARIABLES}))"
        )
    expected = dict.fromkeys(THREAD_VARIABLES, "2") | {"OMP_NUM_THREADS": "7"}
    assert result.stdout == f"{sorted(expected.items())}\n", result.stderr


async def test_timeout_is_enforced_and_reported(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        started = time.monotonic()
        result = await sandbox.exec("while True:\n    pass", timeout=1.5)
        elapsed = time.monotonic() - started
    assert result.exit_reason is ExitReason.TIMEOUT
    assert elapsed < 30  # the exec's own 1.5 s, not the spec's 60 s (loose: no timing)


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


# -- what a script does to its own session is data ---------------------------------------------
FD_EXHAUSTION = {
    "default": "import os\nheld = []\ntry:\n    while True:\n"
    "        held.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError:\n"
    "    print('held', len(held) > 100)",
    # RestrictedPython has no os: its open() (inside the workspace) uses descriptors as well
    "restricted": "held = []\ntry:\n    while True:\n        held.append(open('f.txt', 'w'))\n"
    "except OSError:\n    print('held', len(held) > 100)",
}
ADDRESS_SPACE_EXHAUSTION = {
    # a thread maps ever smaller regions until none fits, and keeps them
    "default": "import mmap, threading\nheld = []\ndef grab():\n    size = 1 << 33\n"
    "    while size >= 1 << 16:\n        try:\n            held.append(mmap.mmap(-1, size))\n"
    "        except (OSError, MemoryError, OverflowError):\n            size //= 2\n"
    "thread = threading.Thread(target=grab)\nthread.start()\nthread.join()\nprint('held')",
    "restricted": "held = []\nsize = 1 << 24\nwhile size >= 1 << 10:\n    try:\n"
    "        held.append(bytes(size))\n    except MemoryError:\n        size //= 2\nprint('held')",
}


def _code(variants: dict[str, str], backend: str) -> str:
    return variants.get(backend, variants["default"])


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [
        ("raise SystemExit(256)", 0, ""),
        ("raise SystemExit(-1)", 255, ""),
        ("raise SystemExit('bye')", 1, "bye\n"),
        ("raise SystemExit(None)", 0, ""),
    ],
)
async def test_exit_statuses_are_pythons(backend: str, code: str, status: int, stderr: str) -> None:
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(code)
        after = await sandbox.exec("print('on')")
    assert (result.exit_code, result.stderr.strip()) == (status, stderr.strip())
    assert result.exit_reason is (ExitReason.OK if status == 0 else ExitReason.ERROR)
    assert after.stdout == "on\n"


async def test_os_exit_keeps_the_output_and_ends_the_session(backend: str) -> None:
    code = "import os\nprint('bye', flush=True)\nos._exit(3)"
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(code)
        if backend == "restricted":  # RestrictedPython refuses `_` names: no os._exit at all
            assert (result.exit_code, "_exit" in result.stderr) == (1, True)
            assert (await sandbox.exec("print('on')")).stdout == "on\n"
            return
        with pytest.raises(SandboxClosedError, match=r"os\._exit\(3\)"):
            await sandbox.exec("print(1)")
    assert (result.exit_code, result.exit_reason, result.stdout) == (3, ExitReason.ERROR, "bye\n")
    run = await run_script_async(code, spec=BACKEND_SPECS[backend])
    assert (run.result.exit_code, run.result.stdout) == (3, "bye\n")
    assert run.ended is not None and "os._exit(3)" in run.ended


@pytest.mark.parametrize(
    ("variants", "reason", "why"),
    [
        (FD_EXHAUSTION, ExitReason.ERROR, "file descriptors"),
        (ADDRESS_SPACE_EXHAUSTION, ExitReason.OOM, "no memory"),
    ],
    ids=["descriptors", "address-space"],
)
async def test_a_script_that_exhausts_the_session_is_data(
    backend: str, variants: dict[str, str], reason: ExitReason, why: str
) -> None:
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(_code(variants, backend), timeout=120)
        assert sandbox.ended is not None and why in sandbox.ended
        with pytest.raises(SandboxClosedError, match=why):
            await sandbox.exec("print(1)")
    assert (result.exit_code, result.exit_reason) == (1, reason), result.stderr
    assert "held" in result.stdout
    assert f"execloop: the script {'used up the' if 'file' in why else 'left'}" in result.stderr
    run = await run_script_async(_code(variants, backend), spec=BACKEND_SPECS[backend])
    assert run.result.exit_reason is reason
    assert run.ended is not None and why in run.ended


async def test_scripts_are_compiled_as_python_compiles_files(backend: str) -> None:
    latin = b"# -*- coding: latin-1 -*-\nprint('caf\xe9')\n"
    async with make_sandbox(backend) as sandbox:
        await sandbox.upload({"latin.py": latin, "broken.py": b"print('\xff')\n"})
        decoded = await sandbox.exec_file("latin.py")
        broken = await sandbox.exec_file("broken.py")
        after = await sandbox.exec("print('on')")
    assert (decoded.exit_code, decoded.stdout) == (0, "café\n"), decoded.stderr
    assert (broken.exit_code, broken.exit_reason) == (1, ExitReason.ERROR)
    assert "SyntaxError" in broken.stderr
    assert after.stdout == "on\n"
    run = await run_script_async(latin, spec=BACKEND_SPECS[backend])
    assert run.result.stdout == "café\n"


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf")])
async def test_bad_timeouts_are_refused_and_the_session_lives(backend: str, timeout: float) -> None:
    async with make_sandbox(backend) as sandbox:
        await sandbox.exec("kept = 1")
        with pytest.raises(ConfigError, match="positive, finite"):
            await sandbox.exec("print(1)", timeout=timeout)
        with pytest.raises(ConfigError, match="positive, finite"):
            await sandbox.exec_file("main.py", timeout=timeout)
        after = await sandbox.exec("print(kept)")
    assert after.stdout == "1\n"


async def test_names_no_file_system_can_hold_are_refused(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        with pytest.raises(ConfigError, match="NUL byte"):
            await sandbox.upload({"in\0put.txt": "x"})
        with pytest.raises(ConfigError, match="at most 255"):
            await sandbox.upload({"n" * 300: "x"})
        with pytest.raises(ConfigError, match="must be bytes or str"):
            await sandbox.upload({"x": 42})  # type: ignore[dict-item]
        with pytest.raises(ConfigError, match="NUL byte"):
            await sandbox.read_file("in\0put.txt")
        manifest = await sandbox.manifest()
    assert manifest.total_files == 0  # nothing was written, truncated or not


async def test_large_transfers_stream_in_bounded_host_memory(
    backend: str, fast_workspace: dict[str, Any]
) -> None:
    size = 256 * 1024**2
    with tempfile.TemporaryDirectory(dir="/dev/shm") as host:  # a tmpfs is not our RSS
        source = Path(host) / "in" / "big.bin"
        source.parent.mkdir()
        with source.open("wb") as handle:
            for _ in range(size // (1 << 20)):
                handle.write(os.urandom(1 << 20))
        async with make_sandbox(backend, **fast_workspace) as sandbox:
            with peak_rss_growth() as growth:
                await sandbox.upload(source.parent, "data")
                copied = await sandbox.download("data", Path(host) / "out")
            listed = await sandbox.manifest()
        assert [p.stat().st_size for p in copied] == [size]
        assert listed.total_bytes == size
    # the old, in-memory transfers held the archive several times (> 3 x 256 MiB)
    assert growth() < 96 * 1024**2, f"host RSS grew by {growth() / 2**20:.0f} MiB"


async def test_bytes_written_to_stdout_buffer_arrive_as_text(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        offered = Capability.BINARY_STDOUT in sandbox.capabilities
        result = await sandbox.exec(
            "import sys\n"
            "sys.stdout.buffer.write(b'caf\\xc3')\n"  # a character split across two writes
            "sys.stdout.buffer.write(b'\\xa9 \\xff\\n')\n"
            "sys.stdout.buffer.flush()"
        )
    if not offered:  # restricted: no sys at all
        assert result.exit_reason is ExitReason.ERROR
        return
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert result.stdout == "café \ufffd\n"
