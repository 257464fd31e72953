"""The restricted backend: what RestrictedPython refuses, what glue may do, and its limits.

It is not a security boundary; these tests pin that the obvious mistakes are refused with a
clear message, not that the backend contains hostile code.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from execloop import ExitReason, SandboxClosedError, SandboxSpec
from execloop.sandboxes.restricted_backend import RestrictedSandbox

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import os", "import of 'os' is not allowed in the restricted backend"),
        ("import subprocess", "import of 'subprocess' is not allowed"),
        ("from sys import modules", "import of 'sys' is not allowed"),
        ("__import__('os')", '"__import__" is an invalid variable name'),
        ("open('/etc/passwd')", "only opens files inside its workspace"),
        ("open('../outside.txt', 'w')", "only opens files inside its workspace"),
        ("open(0)", "open() takes a path"),
        ("().__class__.__bases__", '"__class__" is an invalid attribute name'),
        ("(lambda: 0).__globals__", '"__globals__" is an invalid attribute name'),
        ("import datetime\ndatetime.sys.modules", "attribute 'sys' is the module 'sys'"),
        ("from json import codecs", "json.codecs is the module 'codecs'"),
        ("'{0.real}'.format(1)", "format*() methods of `str` is not safe"),
        ("eval('1')", "Eval calls are not allowed"),
        ("exec('x = 1')", "Exec calls are not allowed"),
    ],
)
async def test_forbidden_things_are_refused_with_a_clear_error(code: str, message: str) -> None:
    async with RestrictedSandbox() as sandbox:
        result = await sandbox.exec(code)
        after = await sandbox.exec("print('still fine')")
    assert result.exit_reason is ExitReason.ERROR
    assert message in result.stderr, result.stderr
    assert after.stdout == "still fine\n"


async def test_allowed_glue_works() -> None:
    async with RestrictedSandbox() as sandbox:
        await sandbox.upload({"data/rows.json": '[{"loss": 4.2}, {"loss": 3.7}]'})
        result = await sandbox.exec(
            "import json, statistics\n"
            "from collections import Counter\n"
            "rows = json.load(open('data/rows.json'))\n"
            "losses = [row['loss'] for row in rows]\n"
            "total = 0\n"
            "for first, second in zip(losses, losses[1:]):\n"
            "    total += first - second\n"
            "with open('summary.txt', 'w') as f:\n"
            "    f.write(f'{statistics.mean(losses):.2f}')\n"
            "print(round(total, 2), sorted(Counter('abca').items()), losses[-1] < losses[0])"
        )
        summary = await sandbox.read_file("summary.txt")
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert result.stdout == "0.5 [('a', 2), ('b', 1), ('c', 1)] True\n"
    assert summary == b"3.95"


async def test_exec_file_is_restricted_too() -> None:
    async with RestrictedSandbox() as sandbox:
        await sandbox.upload({"job.py": "import os\n", "ok.py": "value = 6 * 7\nprint(value)\n"})
        refused = await sandbox.exec_file("job.py")
        ran = await sandbox.exec_file("ok.py")
        joined = await sandbox.exec("print(value + 1)")
    assert refused.exit_reason is ExitReason.ERROR and "'os' is not allowed" in refused.stderr
    assert ran.stdout == "42\n"
    assert joined.stdout == "43\n"


async def test_a_workspace_module_never_stands_in_for_an_allowed_one() -> None:
    async with RestrictedSandbox() as sandbox:
        await sandbox.upload(
            {
                "statistics.py": "import os\nLEAK = os.getcwd()\n",
                "job.py": "import statistics\nprint(hasattr(statistics, 'LEAK'))\n",
            }
        )
        result = await sandbox.exec_file("job.py")
    assert result.stdout == "False\n", result.stderr


async def test_host_environment_is_not_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECLOOP_HOST_SECRET", "secret")
    sandbox = RestrictedSandbox(SandboxSpec(backend="restricted", env={"VISIBLE": "yes"}))
    async with sandbox:
        assert sandbox.process is not None
        environment = psutil.Process(sandbox.process.pid).environ()
    assert "EXECLOOP_HOST_SECRET" not in environment
    assert environment["VISIBLE"] == "yes"


async def test_timeout_kills_the_child() -> None:
    sandbox = RestrictedSandbox()
    async with sandbox:
        assert sandbox.process is not None
        child = psutil.Process(sandbox.process.pid)
        started = time.monotonic()
        result = await sandbox.exec("while True:\n    pass", timeout=1)
        elapsed = time.monotonic() - started
        assert result.exit_reason is ExitReason.TIMEOUT
        assert elapsed < 30  # the exec's own 1 s, not the spec's 60 s (loose: no timing)
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        with pytest.raises(SandboxClosedError, match="timed out"):
            await sandbox.exec("print(1)")


async def test_memory_limit_is_an_rlimit_reported_as_oom() -> None:
    async with RestrictedSandbox(SandboxSpec(backend="restricted", memory="256m")) as sandbox:
        result = await sandbox.exec("chunks = []\nwhile True:\n    chunks.append('x' * 2**24)")
        after = await sandbox.exec("chunks = None\nprint('still here')")
    assert result.exit_reason is ExitReason.OOM
    assert after.stdout == "still here\n"


async def test_bound_workspace_is_kept_and_is_the_limit_of_open(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    spec = SandboxSpec(backend="restricted", workspace_dir=workspace)
    async with RestrictedSandbox(spec) as sandbox:
        wrote = await sandbox.exec("open('kept.txt', 'w').write('yes')")
        escaped = await sandbox.exec("print(open('../outside.txt').read())")
    assert wrote.exit_reason is ExitReason.OK, wrote.stderr
    assert (workspace / "kept.txt").read_text() == "yes"
    assert escaped.exit_reason is ExitReason.ERROR and "secret" not in escaped.stdout
