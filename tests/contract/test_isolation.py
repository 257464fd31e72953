"""Isolation expectations shared by the backends meant for untrusted code (docker, local).

Each backend's own extras (seccomp, no nested user namespaces, PID 1...) are in its own file;
the README's isolation table says what each does and does not protect against.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from execloop import ExitReason

from .backends import make_sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["docker", "local", "jupyter-docker", "jupyter-bubblewrap"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_no_network_only_loopback_and_host_loopback_unreachable(backend: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = f"""
import socket
print(sorted(name for _, name in socket.if_nameindex()))
s = socket.socket()
s.settimeout(2)
try:
    s.connect(('127.0.0.1', {port}))
    print('connected')
except OSError as exc:
    print('refused', type(exc).__name__)
"""
    try:
        async with make_sandbox(backend) as sandbox:
            result = await sandbox.exec(code)
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing from the sandbox ever arrived
    finally:
        listener.close()
    assert result.stdout.splitlines()[0] == "['lo']"
    assert result.stdout.splitlines()[1].startswith("refused")


async def test_not_root_no_capabilities_no_new_privileges(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(
            "import os\n"
            "print(os.getuid(), os.geteuid(), os.getgid())\n"
            "lines = open('/proc/self/status').read().splitlines()\n"
            "status = dict(line.split(':', 1) for line in lines)\n"
            "print(status['CapEff'].strip(), status['NoNewPrivs'].strip())"
        )
    assert result.stdout.splitlines() == ["1000 1000 1000", "0000000000000000 1"]


async def test_root_filesystem_is_read_only_workspace_and_tmp_writable(backend: str) -> None:
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(
            "import errno\n"
            "for path in ('/etc/evil', '/usr/evil', '/opt/execloop/evil', '/evil'):\n"
            "    try:\n        open(path, 'w')\n        print('wrote', path)\n"
            "    except OSError as exc:\n        print(errno.errorcode[exc.errno])\n"
            "open('/workspace/ok', 'w').write('x'); open('/tmp/ok', 'w').write('x'); print('ok')"
        )
    assert result.stdout.split() == ["EROFS"] * 4 + ["ok"], result.stderr


async def test_host_files_and_environment_are_invisible(backend: str, tmp_path: Path) -> None:
    canary = tmp_path / "host-canary.txt"
    canary.write_text("secret")
    os.environ["EXECLOOP_HOST_CANARY"] = "secret"
    try:
        async with make_sandbox(backend, env={"VISIBLE": "yes"}) as sandbox:
            result = await sandbox.exec(
                "import os\n"
                f"print([os.path.exists(p) for p in ({str(canary)!r}, '/work', '/root/.bashrc',"
                " '/var/run/docker.sock')])\n"
                "print('EXECLOOP_HOST_CANARY' in os.environ, os.environ.get('VISIBLE'))"
            )
    finally:
        del os.environ["EXECLOOP_HOST_CANARY"]
    assert result.stdout.splitlines() == ["[False, False, False, False]", "False yes"]


async def test_fork_bomb_is_stopped_by_the_process_limit_and_sandbox_answers(
    backend: str,
) -> None:
    async with make_sandbox(backend, pids=64, timeout_s=30) as sandbox:
        bomb = await sandbox.exec("import os\nwhile True:\n    os.fork()")
        after = await sandbox.exec(
            "import os\nprint('alive', len([p for p in os.listdir('/proc') if p.isdigit()]))"
        )
    assert bomb.exit_reason is ExitReason.ERROR
    assert "BlockingIOError" in bomb.stderr or "Resource temporarily unavailable" in bomb.stderr
    assert after.exit_reason is ExitReason.OK
    assert after.stdout == "alive 2\n"  # the sandbox's init and the helper: nothing else
