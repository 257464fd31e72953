"""The in-sandbox helper and the host protocol, driven as a plain child process (no Docker).

``ChildProcessSandbox`` is test scaffolding, not a backend: it isolates nothing. It lets the
protocol, state, output capture and the host-side deadline be checked in milliseconds.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import anyio.abc
import pytest

from execloop.errors import ConfigError, SandboxClosedError, TransferError
from execloop.sandboxes import helper
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import SOCKET_NAME, HelperSandbox

pytestmark = pytest.mark.anyio


class ChildProcessSandbox(HelperSandbox):
    backend_name = "child-process"

    def __init__(self, spec: SandboxSpec, workspace: Path) -> None:
        super().__init__(spec)
        self.workspace = workspace
        self.process: anyio.abc.Process | None = None

    async def _launch(self, socket_dir: Path) -> None:
        self.process = await anyio.open_process(
            [
                sys.executable,
                helper.__file__,
                str(socket_dir / SOCKET_NAME),
                "--workspace",
                str(self.workspace),
            ],
        )

    async def _is_running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def _death_reason(self) -> ExitReason:
        return ExitReason.KILLED

    async def _remove(self) -> None:
        if self.process is not None:
            await self._kill()
            await self.process.wait()
            await self.process.aclose()
            self.process = None


@pytest.fixture
def make(tmp_path: Path):  # type: ignore[no-untyped-def]
    def factory(**fields: object) -> ChildProcessSandbox:
        return ChildProcessSandbox(SandboxSpec(**fields), tmp_path)  # type: ignore[arg-type]

    return factory


async def test_state_output_and_exit_codes(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        assert (await sandbox.exec("x = 2")).exit_reason is ExitReason.OK
        shown = await sandbox.exec("import sys\nprint(x * 21)\nprint('warn', file=sys.stderr)")
        exited = await sandbox.exec("raise SystemExit(4)")
        message = await sandbox.exec("raise SystemExit('bye')")
        os_level = await sandbox.exec("import os\nos.system('echo from-a-subprocess')")
    assert (shown.stdout, shown.stderr) == ("42\n", "warn\n")
    assert (exited.exit_code, exited.exit_reason) == (4, ExitReason.ERROR)
    assert (message.exit_code, message.stderr) == (1, "bye\n")
    assert os_level.stdout == "from-a-subprocess\n"  # captured at the fd level
    assert shown.peak_memory_bytes and shown.peak_memory_bytes > 1_000_000


async def test_a_forked_child_never_answers_for_the_helper(make) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import os\npid = os.fork()\nif pid == 0:\n    print('child', flush=True)\n"
        "else:\n    os.waitpid(pid, 0)\n    print('parent')"
    )
    async with make() as sandbox:
        forked = await sandbox.exec(code)
        after = await sandbox.exec("print('next')")
    assert forked.stdout == "child\nparent\n"
    assert after.stdout == "next\n"


async def test_output_limit_stops_the_exec_and_keeps_the_session(make) -> None:  # type: ignore[no-untyped-def]
    async with make(max_output_bytes="2k", output_limit_bytes="64k") as sandbox:
        flood = await sandbox.exec("import itertools\nfor i in itertools.count():\n    print(i)")
        after = await sandbox.exec("print('ok')")
    assert flood.exit_reason is ExitReason.OUTPUT_LIMIT
    assert flood.stdout_truncated and len(flood.stdout) < 2200
    assert after.stdout == "ok\n"


async def test_exec_file_runs_as_main_with_args_and_joins_the_namespace(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        await sandbox.upload(
            {
                "job.py": "import sys\nresult = sys.argv[1:]\n"
                "if __name__ == '__main__':\n    print(__file__.endswith('job.py'))"
            }
        )
        ran = await sandbox.exec_file("job.py", args=["a", "b"])
        seen = await sandbox.exec("print(result)")
        missing = await sandbox.exec_file("nope.py")
    assert ran.stdout == "True\n"
    assert seen.stdout == "['a', 'b']\n"
    assert missing.exit_reason is ExitReason.ERROR and "nope.py" in missing.stderr


async def test_helper_refuses_paths_outside_the_workspace(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        with pytest.raises(TransferError, match="outside the workspace"):
            await sandbox.download_tar("../")
        with pytest.raises(TransferError, match="does not exist"):
            await sandbox.artifacts("missing")
        escaped = await sandbox.exec_file("../../etc/passwd")
    assert escaped.exit_reason is ExitReason.ERROR and "outside the workspace" in escaped.stderr


async def test_deadline_kills_and_later_calls_say_why(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        timed_out = await sandbox.exec("import time\ntime.sleep(30)", timeout=0.5)
        with pytest.raises(SandboxClosedError, match="timed out"):
            await sandbox.exec("print(1)")
    assert timed_out.exit_reason is ExitReason.TIMEOUT
    assert timed_out.duration_s < 2


async def test_a_vanished_helper_is_reported_as_killed(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        result = await sandbox.exec(f"import os\nos.kill(os.getpid(), {int(signal.SIGKILL)})")
    assert result.exit_reason is ExitReason.KILLED
    assert result.exit_code is None


async def test_cancelling_a_call_kills_the_sandbox(make) -> None:  # type: ignore[no-untyped-def]
    sandbox = make()
    async with sandbox:
        with anyio.move_on_after(0.3):
            await sandbox.exec("import time\ntime.sleep(30)")
        assert sandbox.process is None  # killed and reaped, not left running
        with pytest.raises(SandboxClosedError, match="interrupted"):
            await sandbox.exec("print(1)")


async def test_unstarted_sandbox_refuses_calls(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SandboxClosedError, match="never started"):
        await make().exec("print(1)")


async def test_manifest_is_bounded_sorted_and_counts_everything(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "outside").write_text("not listed through a link")
    async with make() as sandbox:
        made = await sandbox.exec(
            "import os\nos.makedirs('many/sub')\n"
            "for i in range(2500):\n    open(f'many/{i:05d}', 'w').write('xy')\n"
            "open('many/sub/last', 'w').write('z')\n"
            "os.symlink('../outside', 'many/link')\nos.mkfifo('many/fifo')"
        )
        manifest = await sandbox.manifest("many")
        small = await sandbox.manifest("many", limit=0)
        single = await sandbox.manifest("many/00007", limit=5)
        listed = await sandbox.artifacts("many")
        with pytest.raises(ConfigError, match="manifest limit"):
            await sandbox.manifest(limit=-1)
        with pytest.raises(TransferError, match="does not exist"):
            await sandbox.manifest("missing")
    assert made.ok, made.stderr
    assert len(manifest.files) == 1000 and manifest.truncated
    assert [a.path for a in manifest.files[:2]] == ["many/00000", "many/00001"]
    assert (manifest.total_files, manifest.total_bytes) == (2501, 5001)
    assert (small.files, small.total_files, small.total_bytes) == ([], 2501, 5001)
    assert [(a.path, a.size_bytes) for a in single.files] == [("many/00007", 2)]
    assert listed == manifest.files
