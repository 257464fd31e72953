"""The acceptance tests of the docker backend, on a real Docker daemon."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from execloop import DockerSandbox, ExitReason, SandboxClosedError, SandboxSpec, TransferError

pytestmark = pytest.mark.anyio


async def test_state_persists_across_exec_calls() -> None:
    async with DockerSandbox() as sandbox:
        first = await sandbox.exec("counter = 41\ndef bump():\n    return counter + 1")
        second = await sandbox.exec("print(bump())")
    assert first.exit_reason is ExitReason.OK
    assert second.stdout == "42\n"


async def test_dockers_default_seccomp_profile_is_kept() -> None:
    async with DockerSandbox() as sandbox:
        result = await sandbox.exec(
            "lines = open('/proc/self/status').read().splitlines()\n"
            "print(dict(line.split(':', 1) for line in lines)['Seccomp'].strip())"
        )
    assert result.stdout == "2\n"  # a seccomp filter is in force (uid/caps: tests/security)


# Every process in the container but init (pid 1) and the helper, by pid.
OTHERS = (
    "import os\n"
    "pids = [int(p) for p in os.listdir('/proc') if p.isdigit()]\n"
    "print(sorted(set(pids) - {1, os.getpid()}))"
)


async def test_a_stray_is_gone_by_the_next_exec_even_beside_a_live_user_thread() -> None:
    """The helper scans /proc only when the pids counter holds more than init and its own
    threads: a user thread that stays alive counts on both sides, a stray process on one."""
    async with DockerSandbox() as sandbox:
        assert (await sandbox.exec(OTHERS)).stdout == "[]\n"
        thread = (
            "import threading, time\n"
            "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()"
        )
        assert (await sandbox.exec(thread)).ok
        assert (await sandbox.exec(OTHERS)).stdout == "[]\n"  # a thread is no process
        stray = "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)"
        assert (await sandbox.exec(stray)).ok
        after = await sandbox.exec(OTHERS)
    assert after.stdout == "[]\n", after


async def test_memory_bomb_ends_with_oom() -> None:
    async with DockerSandbox(SandboxSpec(memory="128m", timeout_s=30)) as sandbox:
        result = await sandbox.exec("chunks = []\nwhile True:\n    chunks.append(b'x' * 2**24)")
        assert result.exit_reason is ExitReason.OOM
        with pytest.raises(SandboxClosedError, match="oom"):
            await sandbox.exec("print(1)")


async def test_oom_of_a_child_process_is_reported_and_session_survives() -> None:
    async with DockerSandbox(SandboxSpec(memory="128m", timeout_s=30)) as sandbox:
        hog = (
            "import subprocess, sys\n"
            "hog = 'b = bytearray(2**30)\\nfor i in range(0, 2**30, 4096): b[i] = 1'\n"
            "subprocess.run([sys.executable, '-c', hog])"
        )
        result = await sandbox.exec(hog)
        after = await sandbox.exec("print('still here')")
        # the OOM-kill count an exec starts from may be the last exec's: a new kill still shows
        again, calm = await sandbox.exec(hog), await sandbox.exec("pass")
    assert result.exit_reason is ExitReason.OOM
    assert after.stdout == "still here\n"
    assert after.exit_reason is ExitReason.OK
    assert again.exit_reason is ExitReason.OOM
    assert calm.exit_reason is ExitReason.OK


async def test_infinite_loop_times_out_from_the_host_and_container_is_gone(
    docker_client: Any,
) -> None:
    sandbox = DockerSandbox()
    async with sandbox:
        container_id = sandbox.container.id
        started = time.monotonic()
        result = await sandbox.exec("while True: pass", timeout=2)
        elapsed = time.monotonic() - started
        assert result.exit_reason is ExitReason.TIMEOUT
        assert 2.0 <= elapsed < 30  # the exec's own 2 s, not the spec's 60 s (loose: no timing)
        assert not docker_client.containers.list(all=True, filters={"id": container_id})
        with pytest.raises(SandboxClosedError, match="timed out"):
            await sandbox.exec("print(1)")


async def test_huge_print_is_truncated_and_flagged() -> None:
    async with DockerSandbox(SandboxSpec(max_output_bytes="64k")) as sandbox:
        result = await sandbox.exec("print('x' * 100_000_000)\nprint('never')")
        after = await sandbox.exec("print('fine')")
    assert result.stdout_truncated
    assert result.exit_reason is ExitReason.OUTPUT_LIMIT
    assert len(result.stdout) < 70_000
    assert "bytes omitted" in result.stdout
    assert after.stdout == "fine\n"


async def test_long_output_below_the_hard_limit_keeps_head_and_tail() -> None:
    async with DockerSandbox(SandboxSpec(max_output_bytes="4k")) as sandbox:
        result = await sandbox.exec("for i in range(10000):\n    print(f'line {i}')")
    assert result.exit_reason is ExitReason.OK
    assert result.stdout_truncated
    assert result.stdout.startswith("line 0\n")
    assert result.stdout.endswith("line 9999\n")


def _evil_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:") as tar:
        info = tarfile.TarInfo("../../etc/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    return buffer.getvalue()


async def test_path_traversal_tar_entry_is_refused_on_host_and_in_sandbox() -> None:
    async with DockerSandbox() as sandbox:
        with pytest.raises(TransferError, match="traversal"):
            await sandbox.upload_tar(_evil_tar())
        # bypass the host-side check: the helper refuses on its own as well
        with pytest.raises(TransferError, match="traversal"):
            await sandbox._put_archive(_evil_tar(), ".")
        result = await sandbox.exec("import os\nprint(os.listdir('.'))")
    assert result.stdout == "[]\n"


async def test_files_in_and_out_with_manifest(tmp_path: Path) -> None:
    import hashlib

    async with DockerSandbox() as sandbox:
        await sandbox.upload(
            {
                "data/in.csv": "a,b\n1,2\n",
                "script.py": "import sys\nprint(sys.argv[1:])\n"
                "open('out/result.json', 'w').write('{\"rows\": 1}')\n",
            }
        )
        await sandbox.exec("import os\nos.makedirs('out')")
        run = await sandbox.exec_file("script.py", args=["--rows", "1"])
        manifest = await sandbox.artifacts("out")
        copied = await sandbox.download("out", tmp_path / "out")
        content = await sandbox.read_file("data/in.csv")
    assert run.stdout == "['--rows', '1']\n"
    assert [a.path for a in manifest] == ["out/result.json"]
    assert manifest[0].sha256 == hashlib.sha256(b'{"rows": 1}').hexdigest()
    assert [p.name for p in copied] == ["result.json"]
    assert content == b"a,b\n1,2\n"


async def test_failures_are_data_not_exceptions() -> None:
    async with DockerSandbox() as sandbox:
        error = await sandbox.exec("raise ValueError('bad input')")
        exit_code = await sandbox.exec("import sys\nsys.exit(3)")
        syntax = await sandbox.exec("def broken(:")
    assert error.exit_reason is ExitReason.ERROR and error.exit_code == 1
    assert "ValueError: bad input" in error.stderr
    assert "helper.py" not in error.stderr  # the user sees their traceback, not ours
    assert exit_code.exit_code == 3
    assert syntax.exit_reason is ExitReason.ERROR and "SyntaxError" in syntax.stderr


async def test_any_image_with_python3_works_through_the_mounted_helper() -> None:
    from execloop.images import base_image_tag

    async with DockerSandbox(SandboxSpec(image=base_image_tag())) as sandbox:
        result = await sandbox.exec("import sys, os\nprint(sys.version_info[0], os.getuid())")
    assert result.stdout == "3 1000\n"


async def test_bound_workspace_keeps_files_on_the_host(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.chown(workspace, 1000, 1000)
    async with DockerSandbox(SandboxSpec(workspace_dir=workspace)) as sandbox:
        await sandbox.exec("open('model.txt', 'w').write('weights')")
    assert (workspace / "model.txt").read_text() == "weights"


def test_reaper_removes_orphans_and_spares_live_owners(docker_client: Any) -> None:
    import subprocess
    import sys

    from execloop.images import python_image_tag
    from execloop.sandboxes.reaper import LABEL_OWNER, owner_id, reap_orphans, sandbox_labels

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_owner = owner_id(child.pid)
    child.wait()
    created = {}
    for name, owner in (("orphan", dead_owner), ("live", owner_id())):
        labels = {**sandbox_labels(backend="docker", session=name), LABEL_OWNER: owner}
        created[name] = docker_client.containers.create(
            python_image_tag(), ["true"], labels=labels, network_mode="none"
        )
    try:
        removed = reap_orphans(docker_client)
        assert created["orphan"].short_id in removed
        assert created["live"].short_id not in removed
        created["live"].reload()  # still there
    finally:
        created["live"].remove(force=True)


async def test_user_labels_are_on_the_container_beside_execloops(docker_client: Any) -> None:
    spec = SandboxSpec(labels={"com.example.team": "ml", "run": "7"})
    async with DockerSandbox(spec) as sandbox:
        labels = docker_client.containers.get(sandbox.container.id).labels
    assert labels["com.example.team"] == "ml" and labels["run"] == "7"
    assert labels["org.execloop.session"] == sandbox.session_id
