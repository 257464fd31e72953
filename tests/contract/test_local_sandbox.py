"""The isolation expectations of the local (bubblewrap) backend, on real bubblewrap."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import psutil
import pytest

from execloop import ExitReason, SandboxClosedError, SandboxSpec
from execloop.sandboxes.local_backend import LocalSandbox

pytestmark = pytest.mark.anyio


def _session_processes(session_id: str) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if session_id in " ".join(p.info["cmdline"] or [])
    ]


async def test_not_root_no_capabilities_no_new_privileges_no_nested_namespaces() -> None:
    async with LocalSandbox() as sandbox:
        result = await sandbox.exec(
            "import os, subprocess\n"
            "print(os.getuid(), os.geteuid(), os.getgid())\n"
            "lines = open('/proc/self/status').read().splitlines()\n"
            "status = dict(line.split(':', 1) for line in lines)\n"
            "print(status['CapEff'].strip(), status['NoNewPrivs'].strip())\n"
            "print(subprocess.run(['unshare', '--user', 'true']).returncode != 0)"
        )
    ids, security, refused = result.stdout.splitlines()
    assert ids == "1000 1000 1000"
    assert security == "0000000000000000 1"
    assert refused == "True", result.stderr  # --disable-userns: no user namespaces inside


async def test_code_runs_as_an_unprivileged_host_user(tmp_path: Path) -> None:
    async with LocalSandbox() as sandbox:
        await sandbox.exec("import time")
        helper = [
            p
            for p in psutil.process_iter(["cmdline", "uids"])
            if sandbox.session_id in " ".join(p.info["cmdline"] or [])
            and "helper.py" in " ".join(p.info["cmdline"] or [])
            and "bwrap" not in (p.info["cmdline"] or [""])[0]
        ]
    assert helper, "the helper process should be visible from the host"
    # never host root: the kernel does not apply RLIMIT_NPROC to root
    assert all(p.info["uids"].real != 0 for p in helper)


async def test_root_filesystem_is_read_only_workspace_and_tmp_writable() -> None:
    async with LocalSandbox() as sandbox:
        result = await sandbox.exec(
            "import errno\n"
            "for path in ('/etc/evil', '/usr/evil', '/opt/execloop/evil', '/evil',"
            " '/opt/execloop/python/evil'):\n"
            "    try:\n        open(path, 'w')\n        print('wrote', path)\n"
            "    except OSError as exc:\n        print(errno.errorcode[exc.errno])\n"
            "open('/workspace/ok', 'w').write('x'); open('/tmp/ok', 'w').write('x')\n"
            "open('/dev/shm/ok', 'w').write('x'); open('/dev/null', 'w').write('x'); print('ok')"
        )
    assert result.stdout.split() == ["EROFS"] * 5 + ["ok"], result.stderr


async def test_host_files_and_environment_are_invisible(tmp_path: Path) -> None:
    canary = tmp_path / "host-canary.txt"
    canary.write_text("secret")
    os.environ["EXECLOOP_HOST_CANARY"] = "secret"
    try:
        async with LocalSandbox(SandboxSpec(backend="local", env={"VISIBLE": "yes"})) as sandbox:
            result = await sandbox.exec(
                "import os\n"
                f"print([os.path.exists(p) for p in ({str(canary)!r}, '/root', '/work',"
                " '/home', '/var/run/docker.sock')], os.listdir('/tmp'))\n"
                "print('EXECLOOP_HOST_CANARY' in os.environ, os.environ.get('VISIBLE'),"
                " os.environ['HOME'])"
            )
    finally:
        del os.environ["EXECLOOP_HOST_CANARY"]
    assert result.stdout.splitlines() == [
        "[False, False, False, False, False] []",
        "False yes /tmp",
    ]


async def test_pid_one_is_bwraps_init_and_the_helper_is_pid_two() -> None:
    async with LocalSandbox() as sandbox:
        result = await sandbox.exec(
            "import os\nprint(os.getpid(), open('/proc/1/cmdline').read().split('\\0')[0]"
            ".rsplit('/', 1)[-1])\n"
            "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
        )
    assert result.stdout.splitlines() == ["2 bwrap", "[1, 2]"]


async def test_memory_bomb_ends_with_oom_and_the_session_survives() -> None:
    async with LocalSandbox(SandboxSpec(backend="local", memory="128m", timeout_s=30)) as sandbox:
        result = await sandbox.exec("chunks = []\nwhile True:\n    chunks.append(b'x' * 2**24)")
        after = await sandbox.exec("del chunks\nprint('still here')")
    assert result.exit_reason is ExitReason.OOM
    assert "MemoryError" in result.stderr
    assert after.stdout == "still here\n"


async def test_infinite_loop_times_out_from_the_host_and_nothing_remains() -> None:
    sandbox = LocalSandbox()
    async with sandbox:
        started = time.monotonic()
        result = await sandbox.exec("while True: pass", timeout=2)
        elapsed = time.monotonic() - started
        assert result.exit_reason is ExitReason.TIMEOUT
        assert elapsed < 3.0
        assert _session_processes(sandbox.session_id) == []
        with pytest.raises(SandboxClosedError, match="timed out"):
            await sandbox.exec("print(1)")


async def test_background_and_setsid_processes_die_with_the_sandbox() -> None:
    sandbox = LocalSandbox(SandboxSpec(backend="local", keep_background_processes=True))
    async with sandbox:
        result = await sandbox.exec(
            "import subprocess\n"
            "subprocess.Popen(['sleep', '600'], start_new_session=True)\n"
            "subprocess.Popen(['sh', '-c', 'sleep 600 & sleep 600'])\n"
            "print('started')"
        )
        assert result.stdout == "started\n"
        assert sandbox.process is not None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the shell starts its two sleeps on its own time
            inside = psutil.Process(sandbox.process.pid).children(recursive=True)
            if len([p for p in inside if p.name() == "sleep"]) == 3:
                break
            await anyio.sleep(0.05)
        assert len([p for p in inside if p.name() == "sleep"]) == 3
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in inside)
    assert _session_processes(sandbox.session_id) == []


def test_the_sandbox_dies_with_its_owner() -> None:
    """--die-with-parent: a crashed execloop leaves no sandbox behind."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import anyio, sys, time\n"
            "from execloop.sandboxes.local_backend import LocalSandbox\n"
            "async def main():\n"
            "    async with LocalSandbox() as sandbox:\n"
            "        print(sandbox.session_id, sandbox.socket_dir, sandbox.state_dir, flush=True)\n"
            "        await sandbox.exec('import time')\n"
            "        time.sleep(600)\n"
            "anyio.run(main)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        session_id, *left_behind = owner.stdout.readline().split()
        deadline = time.monotonic() + 10
        while len(_session_processes(session_id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _session_processes(session_id)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 5
    while _session_processes(session_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_processes(session_id) == []
    for folder in left_behind:  # the dead owner could not remove its host directories
        shutil.rmtree(folder)


async def test_bound_workspace_keeps_files_on_the_host(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.chown(workspace, 1000, 1000)
    async with LocalSandbox(SandboxSpec(backend="local", workspace_dir=workspace)) as sandbox:
        result = await sandbox.exec("open('model.txt', 'w').write('weights')")
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert (workspace / "model.txt").read_text() == "weights"
    assert (workspace / "model.txt").stat().st_uid == 1000


async def test_workspace_size_is_capped() -> None:
    spec = SandboxSpec(backend="local", workspace_size="2m", memory="512m")
    async with LocalSandbox(spec) as sandbox:
        result = await sandbox.exec("open('big', 'wb').write(b'x' * 3 * 2**20)")
    assert result.exit_reason is ExitReason.ERROR
    assert "File too large" in result.stderr or "No space left" in result.stderr
