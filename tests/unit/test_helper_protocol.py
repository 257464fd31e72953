"""The in-sandbox helper and the host protocol, driven as a plain child process (no Docker).

``ChildProcessSandbox`` is test scaffolding, not a backend: it isolates nothing. It lets the
protocol, state, output capture and the host-side deadline be checked in milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from execloop.errors import ConfigError, SandboxClosedError, TransferError
from execloop.sandboxes import helper
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.guest import session as guest_session
from execloop.sandboxes.placements.process import ProcessPlacement, ProcessView
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import HelperSandbox

pytestmark = pytest.mark.anyio


class ChildProcessSandbox(ProcessView, HelperSandbox):
    """The plain helper on a host-process placement."""

    backend_name = "child-process"

    def __init__(self, spec: SandboxSpec, workspace: Path) -> None:
        spec = spec.model_copy(update={"workspace_dir": workspace})
        super().__init__(spec, placement=lambda session: ProcessPlacement(spec, session_id=session))

    def _environment(self) -> dict[str, str]:
        return dict(os.environ)


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


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [
        ("raise SystemExit", 0, ""),
        ("import sys\nsys.exit(256)", 0, ""),
        ("import sys\nsys.exit(-1)", 255, ""),
        ("import sys\nsys.exit(True)", 1, ""),
        ("import sys\nsys.exit(2**100)", 255, ""),
        ("import sys\nsys.exit(3.5)", 1, "3.5\n"),
        ("import sys\nsys.exit('bye')", 1, "bye\n"),
    ],
)
async def test_exit_statuses_are_pythons(make, code: str, status: int, stderr: str) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        result = await sandbox.exec(code)
        after = await sandbox.exec("print('on')")
    assert (result.exit_code, result.stderr) == (status, stderr)
    assert result.exit_reason is (ExitReason.OK if status == 0 else ExitReason.ERROR)
    assert after.stdout == "on\n"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("import os\nprint('bye', flush=True)\nos._exit(3)", 3),
        ("import os\nprint('bye', end='')\nos._exit(0)", 0),
        (
            "import os, threading, time\nprint('bye')\n"
            "threading.Thread(target=os._exit, args=(260,)).start()\ntime.sleep(30)",
            4,
        ),
    ],
    ids=["main-thread", "unflushed-zero", "other-thread"],
)
async def test_os_exit_keeps_output_and_ends_the_session(make, code: str, status: int) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        result = await sandbox.exec(code)
        assert sandbox.process is None  # the helper exited and the sandbox was removed
        with pytest.raises(
            SandboxClosedError, match=rf"os\._exit\({status if status != 4 else 260}\)"
        ):
            await sandbox.exec("print(1)")
    assert (result.exit_code, result.stdout.strip()) == (status, "bye")
    assert result.exit_reason is (ExitReason.OK if status == 0 else ExitReason.ERROR)


async def test_os_exit_between_execs_is_reported_by_the_next_call(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        started = await sandbox.exec(
            "import os, threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.2), os._exit(7))).start()"
        )
        assert sandbox.process is not None
        await anyio.to_thread.run_sync(
            sandbox.process.wait
        )  # the thread ended the helper between the calls
        late = await sandbox.exec("print('never runs')")
        with pytest.raises(SandboxClosedError, match=r"os\._exit\(7\)"):
            await sandbox.manifest()
    assert started.ok
    assert (late.exit_code, late.exit_reason) == (7, ExitReason.ERROR)
    assert "between execs" in late.stderr and late.stdout == ""


async def test_used_up_descriptors_are_data_and_close_the_session(make) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import os, resource\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "held = []\n"
        "try:\n    while True:\n        held.append(os.open(os.devnull, os.O_RDONLY))\n"
        "except OSError:\n    print('held', len(held) > 10)"
    )
    async with make() as sandbox:
        result = await sandbox.exec(code)
        with pytest.raises(SandboxClosedError, match="file descriptors"):
            await sandbox.manifest()
    assert (result.exit_code, result.exit_reason) == (1, ExitReason.ERROR)
    assert result.stdout == "held True\n"
    assert "execloop: the script used up the file descriptors" in result.stderr


async def test_an_exhausted_address_space_is_data_and_closes_the_session(make) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import mmap, resource, threading\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, resource.RLIM_INFINITY))\n"
        "held = []\n"
        "def grab():\n    size = 1 << 30\n    while size >= 1 << 16:\n"
        "        try:\n            held.append(mmap.mmap(-1, size))\n"
        "        except (OSError, MemoryError):\n            size //= 2\n"
        "thread = threading.Thread(target=grab)\nthread.start()\nthread.join()"
    )
    async with make() as sandbox:
        result = await sandbox.exec(code)
        with pytest.raises(SandboxClosedError, match="no memory"):
            await sandbox.exec("print(1)")
    assert (result.exit_code, result.exit_reason) == (1, ExitReason.OOM)
    assert "execloop: the script left the helper no memory" in result.stderr


async def test_a_failure_in_the_helpers_own_work_is_data(make) -> None:  # type: ignore[no-untyped-def]
    sabotage = (  # the user's code shares the helper's process: break its output buffer
        "import sys\ndef boom(self):\n    raise MemoryError\n"
        "sys.modules['guest.capture']._Bounded.raw = boom\nprint('lost')"
    )
    async with make() as sandbox:
        result = await sandbox.exec(sabotage)
        with pytest.raises(SandboxClosedError, match="the helper failed after the script ran"):
            await sandbox.exec("print(1)")
    assert (result.exit_code, result.exit_reason) == (1, ExitReason.OOM)
    assert "execloop: the helper failed after the script ran (no memory)" in result.stderr


async def test_scripts_are_compiled_as_python_compiles_files(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        await sandbox.upload(
            {
                "latin.py": b"# -*- coding: latin-1 -*-\nprint('caf\xe9')\n",
                "broken.py": b"print('\xff\xfe')\n",
            }
        )
        latin = await sandbox.exec_file("latin.py")
        broken = await sandbox.exec_file("broken.py")
        after = await sandbox.exec("print('still here')")
    assert (latin.exit_code, latin.stdout) == (0, "café\n")
    assert (broken.exit_code, broken.exit_reason) == (1, ExitReason.ERROR)
    assert "SyntaxError" in broken.stderr and "utf-8" in broken.stderr
    assert after.stdout == "still here\n"


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), True, "5"])
async def test_bad_timeouts_are_refused_before_anything_happens(make, timeout: object) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        with pytest.raises(ConfigError, match="timeout"):
            await sandbox.exec("print(1)", timeout=timeout)
        with pytest.raises(ConfigError, match="timeout"):
            await sandbox.exec_file("x.py", timeout=timeout)
        after = await sandbox.exec("print('alive')")
    assert after.stdout == "alive\n" and sandbox.exec_count == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.upload({"a\0b": "x"}), "NUL byte"),
        (lambda s: s.upload({"x": 42}), "must be bytes or str, not int"),
        (lambda s: s.upload({"n" * 256: "x"}), "at most 255"),
        (lambda s: s.upload({"": "x"}), "does not name a file"),
        (lambda s: s.upload("in.txt"), r"wrap a host path in Path"),
        (lambda s: s.upload({"x": "y"}, dest="a\0"), "NUL byte"),
        (lambda s: s.manifest("a\0b"), "NUL byte"),
        (lambda s: s.read_file("a\0b"), "NUL byte"),
        (lambda s: s.exec_file("a\0b"), "NUL byte"),
        (lambda s: s.exec_file("x.py", args="ab"), "sequence of str"),
        (lambda s: s.exec(b"print(1)"), "code must be a str"),
    ],
)
async def test_bad_arguments_are_clear_config_errors(make, call, message: str) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        with pytest.raises(ConfigError, match=message):
            await call(sandbox)
        manifest = await sandbox.manifest()
    assert manifest.total_files == 0


async def test_host_folders_stream_in_and_out_without_links(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "src"
    (source / "sub" / "empty").mkdir(parents=True)
    (source / "sub" / "data.bin").write_bytes(bytes(range(256)) * 8193)
    (source / "run.sh").write_text("echo hi\n")
    (source / "run.sh").chmod(0o755)
    (source / "link").symlink_to("/etc/passwd")
    os.mkfifo(source / "fifo")
    async with make() as sandbox:
        await sandbox.upload(source, "in")
        listed = await sandbox.manifest("in")
        modes = await sandbox.exec("import os\nprint(oct(os.stat('in/run.sh').st_mode & 0o777))")
        copied = await sandbox.download("in", tmp_path / "back")
        whole = await sandbox.read_file("in/sub/data.bin")
    assert [a.path for a in listed.files] == ["in/run.sh", "in/sub/data.bin"]
    assert modes.stdout == "0o755\n"
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in copied) == [
        "run.sh",
        "sub/data.bin",
    ]
    assert whole == (source / "sub" / "data.bin").read_bytes()


async def test_an_upload_that_cannot_fit_is_refused_before_it_starts(  # type: ignore[no-untyped-def]
    make, tmp_path_factory: pytest.TempPathFactory
) -> None:
    huge = tmp_path_factory.mktemp("host") / "huge.bin"  # not in the sandbox's workspace
    with huge.open("wb") as handle:
        handle.truncate(1 << 43)  # sparse: 8 TiB that take no disk
    async with make() as sandbox:
        with pytest.raises(TransferError, match=r"needs .* free; raise workspace_size"):
            await sandbox.upload(huge)
        listed = await sandbox.manifest()
    assert listed.total_files == 0


async def test_a_download_larger_than_the_cap_is_refused(
    make, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("execloop.sandboxes.stateful.MAX_DOWNLOAD_BYTES", 1 << 20)
    async with make() as sandbox:
        await sandbox.exec("open('big', 'wb').write(b'x' * (3 << 20))")
        with pytest.raises(TransferError, match="larger than"):
            await sandbox.read_file("big")
        assert (await sandbox.exec("print('in sync')")).stdout == "in sync\n"


def test_reap_all_is_refused_outside_a_private_pid_namespace(tmp_path: Path) -> None:
    """``--reap-all`` run by hand on a host would kill the host's processes after one exec:
    the helper refuses before it even connects (the socket here does not exist)."""
    import subprocess

    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        finished = subprocess.run(
            [sys.executable, helper.__file__, str(tmp_path / "none.sock"), "--reap-all"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert finished.returncode == 1
        assert "refusing --reap-all" in finished.stderr
        assert "Traceback" not in finished.stderr
        assert decoy.poll() is None
    finally:
        decoy.kill()
        decoy.wait()


async def test_a_warmed_session_shows_no_trace_of_the_rehearsal(make) -> None:  # type: ignore[no-untyped-def]
    async with make() as sandbox:
        await sandbox.warm()
        first = await sandbox.exec("print(sorted(k for k in globals() if not k.startswith('__')))")
        failed = await sandbox.exec("1/0")
    assert (first.stdout, first.stderr) == ("[]\n", "")
    assert 'File "<exec-2>", line 1' in failed.stderr  # numbered as if no rehearsal had run
    assert sandbox.exec_count == 2


def test_sources_kept_for_tracebacks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import linecache

    monkeypatch.setattr(guest_session, "_kept_sources", [])
    monkeypatch.setattr(guest_session, "_kept_chars", [0])
    names = [f"<exec-bound-{n}>" for n in range(guest_session._KEPT_SOURCES_MAX + 50)]
    try:
        for name in names:
            guest_session._remember_source(name, "x = 1\n")
        kept = [name for name in names if name in linecache.cache]
        assert kept == names[-guest_session._KEPT_SOURCES_MAX :]
        big = "#" * (guest_session._KEPT_SOURCE_CHARS_MAX // 2 + 1)
        guest_session._remember_source("<exec-big-1>", big)
        guest_session._remember_source("<exec-big-2>", big)  # the two cannot both stay
        assert "<exec-big-2>" in linecache.cache and "<exec-big-1>" not in linecache.cache
        assert linecache.getline(names[-1], 1) == ""  # evicted for the big ones' room
    finally:
        for name in [*names, "<exec-big-1>", "<exec-big-2>"]:
            linecache.cache.pop(name, None)
