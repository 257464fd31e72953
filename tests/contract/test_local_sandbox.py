"""The isolation expectations of the local (bubblewrap) backend, on real bubblewrap.

The host these run on lets execloop make cgroups (root, cgroup v1): a sandbox gets its own, and
the tests that set ``EXECLOOP_CGROUPS=off`` exercise the rlimit fallback for real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import anyio
import psutil
import pytest

from execloop import ExitReason, SandboxClosedError, SandboxSpec
from execloop.sandboxes.cgroup_host import ENV, remove_orphaned_cgroups
from execloop.sandboxes.cgroups import is_orphan
from execloop.sandboxes.local_backend import LocalSandbox
from execloop.sandboxes.placements.process import nproc_per_sandbox

pytestmark = pytest.mark.anyio

BOMB = "chunks = []\nwhile True:\n    chunks.append(b'x' * 2**24)"
# The same bomb giving back a reserve as it fails, so the session's headroom after it does not
# depend on where the last 16 MiB chunk happened to stop.
BOMB_WITH_RESERVE = """\
chunks, reserve = [], bytearray(8 * 2**20)
try:
    while True:
        chunks.append(b'x' * 2**24)
except MemoryError:
    del reserve
    raise
"""
# 64 threads alive at once (a barrier); then numpy's own thread pool on a matrix product
THREADS_ONLY = """\
import threading
barrier = threading.Barrier(64)
done = []
def work():
    barrier.wait(timeout=60)
    done.append(sum(range(10_000)))
threads = [threading.Thread(target=work) for _ in range(64)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(done), end=" ")
"""
THREADS = f"""\
{THREADS_ONLY}
import numpy as np
matrix = np.random.default_rng(0).random((1500, 1500))
print(float((matrix @ matrix).sum()) > 0)
"""
# numpy called from 64 threads at once: each calling thread gets OpenBLAS buffers (reserved,
# mostly untouched), more than 1 GiB of address space or of RLIMIT_DATA; a cgroup counts use
NUMPY_THREADS = """\
import threading
from concurrent.futures import ThreadPoolExecutor
import numpy as np
barrier = threading.Barrier(64)
def work(seed):
    barrier.wait(timeout=60)
    matrix = np.random.default_rng(seed).random((300, 300))
    return float((matrix @ matrix.T).trace())
with ThreadPoolExecutor(max_workers=64) as pool:
    results = list(pool.map(work, range(64)))
print(len(results), all(value > 0 for value in results))
"""
HOLD = "import subprocess\nheld = [subprocess.Popen(['sleep', '600']) for _ in range(50)]\n"


@pytest.fixture(params=["cgroup", "rlimits"])
def limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each mode for real: this host's cgroup, or the fallback forced by the documented switch."""
    if request.param == "rlimits":
        monkeypatch.setenv(ENV, "off")
    return str(request.param)


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


async def test_threads_and_numpy_run_with_the_default_limits(limits: str) -> None:
    async with LocalSandbox() as sandbox:
        assert (sandbox.cgroup is not None) == (limits == "cgroup")
        result = await sandbox.exec(THREADS)
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert result.stdout == "64 True\n"


def test_an_unprivileged_caller_gets_the_rlimit_fallback_and_threads_run() -> None:
    """The fallback as a real non-root user meets it: no cgroup can be made (the hierarchies
    are root's), `cpus` is refused, 64 threads run under RLIMIT_DATA, a memory bomb is a
    MemoryError (`oom`). The caller is the system Python as uid 1000 with this venv's packages
    (the venv's own interpreter lies under /root); it has no numpy, so threads only here."""
    system_python = "/usr/bin/python3"
    version = subprocess.run(
        [system_python, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    wanted = str(sys.version_info[:2])
    assert version == wanted, f"{system_python} is Python {version}, the venv's is {wanted}"
    code = (
        "import site, sys\n"
        "site.addsitedir(sys.argv[1])\n"
        "import anyio\n"
        "from execloop import SandboxSpec\n"
        "from execloop.errors import ConfigError\n"
        "from execloop.sandboxes.local_backend import LocalSandbox\n"
        "async def main():\n"
        "    try:\n"
        "        LocalSandbox(SandboxSpec(backend='local', cpus=2))\n"
        "    except ConfigError as exc:\n"
        "        print('refused', 'gives the sandbox no cgroup' in str(exc))\n"
        "    async with LocalSandbox() as sandbox:\n"
        "        print('cgroup', sandbox.cgroup)\n"
        "        threads = await sandbox.exec(sys.argv[2])\n"
        "        bomb = await sandbox.exec(sys.argv[3])\n"
        "    print('threads', threads.exit_reason.value, threads.stdout.strip())\n"
        "    print('bomb', bomb.exit_reason.value, 'MemoryError' in bomb.stderr)\n"
        "anyio.run(main)\n"
    )
    as_user = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups"]
    done = subprocess.run(
        [
            *(as_user if os.geteuid() == 0 else []),
            system_python,
            "-c",
            code,
            sysconfig.get_paths()["purelib"],
            THREADS_ONLY,
            BOMB,
        ],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": tempfile.gettempdir()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "refused True",
        "cgroup None",
        "threads ok 64",
        "bomb oom True",
    ]


async def test_numpy_from_64_threads_runs_in_a_cgroup() -> None:
    async with LocalSandbox() as sandbox:
        result = await sandbox.exec(NUMPY_THREADS)
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert result.stdout == "64 True\n"


async def test_two_sandboxes_do_not_share_a_process_budget(limits: str) -> None:
    """Each sandbox forks near its own limit while the other holds as many. Without a cgroup
    that holds only where RLIMIT_NPROC is per user namespace (Linux >= 5.14); before, it is the
    host uid's, and the second sandbox gets what the first left."""
    spec = SandboxSpec(backend="local", pids=64, keep_background_processes=True)
    async with LocalSandbox(spec) as first, LocalSandbox(spec) as second:
        held = [await sandbox.exec(f"{HOLD}print(len(held))") for sandbox in (first, second)]
        tasks = [
            int((s.cgroup.dirs["pids"] / "pids.current").read_text())
            for s in (first, second)
            if s.cgroup is not None
        ]
    if limits == "rlimits" and not nproc_per_sandbox():
        assert held[1].exit_reason is ExitReason.ERROR and "BlockingIOError" in held[1].stderr
        return
    assert [result.stdout for result in held] == ["50\n", "50\n"], held[1].stderr
    assert len(tasks) == (2 if limits == "cgroup" else 0)
    assert all(50 < count <= 64 for count in tasks)  # each near its own limit, at once


async def test_memory_bomb_is_oom_and_the_peak_is_the_cgroups() -> None:
    async with LocalSandbox(SandboxSpec(backend="local", memory="128m", timeout_s=30)) as sandbox:
        assert sandbox.cgroup is not None
        result = await sandbox.exec(BOMB)
        with pytest.raises(SandboxClosedError, match="oom"):  # like a container: state is gone
            await sandbox.exec("print(1)")
    assert result.exit_reason is ExitReason.OOM
    assert result.peak_memory_bytes is not None
    assert 100 * 2**20 <= result.peak_memory_bytes <= 128 * 2**20  # the whole tree, capped


async def test_a_child_ended_by_the_oom_killer_is_oom_and_the_session_survives() -> None:
    async with LocalSandbox(SandboxSpec(backend="local", memory="128m", timeout_s=30)) as sandbox:
        result = await sandbox.exec(
            "import subprocess, sys\n"
            "child = subprocess.run([sys.executable, '-c', 'b = bytearray(400 * 2**20)'])\n"
            "print(child.returncode)"
        )
        after = await sandbox.exec("print('still here')")
    assert result.exit_reason is ExitReason.OOM, result.stderr
    assert result.stdout == "-9\n"
    assert "the OOM killer ended a process (memory=134217728 bytes)" in result.stderr
    assert after.exit_reason is ExitReason.OK and after.stdout == "still here\n"


async def test_peak_memory_counts_what_the_session_used() -> None:
    async with LocalSandbox() as sandbox:
        small = await sandbox.exec("x = 1")
        big = await sandbox.exec("block = bytearray(300 * 2**20)\ndel block")
    assert small.peak_memory_bytes is not None and big.peak_memory_bytes is not None
    assert big.peak_memory_bytes >= small.peak_memory_bytes + 290 * 2**20


async def test_without_a_cgroup_a_memory_bomb_is_a_memory_error_and_the_session_survives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "off")
    async with LocalSandbox(SandboxSpec(backend="local", memory="128m", timeout_s=30)) as sandbox:
        assert sandbox.cgroup is None
        result = await sandbox.exec(BOMB_WITH_RESERVE)
        after = await sandbox.exec("del chunks\nprint('still here')")
    assert result.exit_reason is ExitReason.OOM
    assert "MemoryError" in result.stderr
    assert after.stdout == "still here\n"


async def test_cpus_is_a_cpu_quota_that_throttles() -> None:
    spin = "import time\nwhile time.process_time() < 0.5: pass"
    async with LocalSandbox(SandboxSpec(backend="local", cpus=0.5)) as sandbox:
        assert sandbox.cgroup is not None
        cpu = sandbox.cgroup.dirs["cpu"]
        quota = (cpu / "cpu.cfs_quota_us").read_text().split()
        result = await sandbox.exec(  # two processes spend 1 s of CPU time under 0.5 CPU
            "import subprocess, sys\n"
            f"spinners = [subprocess.Popen([sys.executable, '-c', {spin!r}]) for _ in range(2)]\n"
            "print([spinner.wait() for spinner in spinners])"
        )
        stat = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
    assert quota == ["50000"] and result.stdout == "[0, 0]\n", result.stderr
    assert int(stat["nr_throttled"]) > 0


async def test_the_cgroup_goes_with_the_sandbox() -> None:
    sandbox = LocalSandbox(SandboxSpec(backend="local", keep_background_processes=True))
    async with sandbox:
        await sandbox.exec("import subprocess\nsleeper = subprocess.Popen(['sleep', '600'])")
        assert sandbox.cgroup is not None and sandbox.process is not None
        folders = sandbox.cgroup.folders
        inside = {int(pid) for pid in (folders[0] / "cgroup.procs").read_text().split()}
        tree = psutil.Process(sandbox.process.pid).children(recursive=True)
        # the whole tree, from the first process (the prefix, now bwrap) on, is in the cgroup
        assert {sandbox.process.pid, *(p.pid for p in tree)} <= inside
    assert len(folders) == 3 and not any(folder.exists() for folder in folders)


async def test_infinite_loop_times_out_from_the_host_and_nothing_remains() -> None:
    sandbox = LocalSandbox()
    async with sandbox:
        started = time.monotonic()
        result = await sandbox.exec("while True: pass", timeout=2)
        elapsed = time.monotonic() - started
        assert result.exit_reason is ExitReason.TIMEOUT
        assert 2.0 <= elapsed < 30  # the exec's own 2 s, not the spec's 60 s (loose)
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
            "        folders = sandbox.cgroup.folders\n"
            "        print(sandbox.session_id, sandbox.socket_dir, sandbox.state_dir, flush=True)\n"
            "        print(*folders, flush=True)\n"
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
        cgroup = [Path(folder) for folder in owner.stdout.readline().split()]
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
    # the dead owner could not remove its host directories: its janitor did
    deadline = time.monotonic() + 5
    while any(Path(folder).exists() for folder in left_behind) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [folder for folder in left_behind if Path(folder).exists()]
    # nor its cgroup: an orphan by its name, which `execloop reap` removes
    assert len(cgroup) == 3 and all(folder.is_dir() and is_orphan(folder.name) for folder in cgroup)
    assert set(cgroup) <= set(remove_orphaned_cgroups())
    assert not any(folder.exists() for folder in cgroup)


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


def _mount_points(pid: int) -> list[str]:
    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines]


async def test_as_root_the_first_stage_sees_only_what_the_second_needs() -> None:
    """A recursive bind of the host's / copied every mount, and a Docker overlay (un)mounted
    meanwhile failed it: the root stage's namespace holds the few binds it needs, no more."""
    async with LocalSandbox() as sandbox:
        await sandbox.exec("import time")
        assert sandbox.process is not None and sandbox.state_dir is not None
        state_dir, control_dir = str(sandbox.state_dir), str(sandbox.socket_dir)
        tree = [psutil.Process(sandbox.process.pid)]
        tree += tree[0].children(recursive=True)
        host = os.readlink("/proc/self/ns/mnt")
        spaces = {os.readlink(f"/proc/{p.pid}/ns/mnt"): p.pid for p in tree}
        seen = [_mount_points(pid) for space, pid in spaces.items() if space != host]
    if os.geteuid() != 0:  # no root stage: one namespace, the sandbox's own
        assert len(seen) == 1
        return
    outer = [points for points in seen if f"{state_dir}/mnt/python" in points]
    assert len(outer) == 1, seen
    roots = ("/usr", "/dev", "/proc", "/etc/ld.so.cache", state_dir)
    stray = [p for p in outer[0] if p != "/" and not p.startswith(roots)]
    assert stray == [control_dir], outer[0]


async def test_thread_counts_follow_a_cpu_quota_only_where_there_is_one(limits: str) -> None:
    async with LocalSandbox() as sandbox:  # cpus=1 by default: a quota in a cpu cgroup
        result = await sandbox.exec("import os\nprint(os.environ.get('OPENBLAS_NUM_THREADS'))")
    assert result.stdout == ("1\n" if limits == "cgroup" else "None\n"), result.stderr
