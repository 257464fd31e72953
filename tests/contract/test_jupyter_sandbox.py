"""The acceptance tests of the jupyter backend: real kernels in real containers and bwrap."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from execloop import ExitReason, SandboxClosedError, SandboxSpec, TransferError
from execloop.errors import SandboxStartError
from execloop.sandboxes import jupyter_backend
from execloop.sandboxes.container_provisioner import ContainerKernelProvisioner
from execloop.sandboxes.jupyter_backend import JupyterSandbox
from execloop.sandboxes.kernel_session import INTERRUPT_GRACE_S
from execloop.sandboxes.kernelspecs import KERNEL_NAMES, install_kernelspecs
from execloop.sandboxes.reaper import LABEL_BACKEND, LABEL_OWNER, owner_id

from .backends import leftovers

pytestmark = pytest.mark.anyio

PLACEMENTS = ["docker", "bubblewrap"]


def jupyter(placement: str, **fields: Any) -> JupyterSandbox:
    return JupyterSandbox(SandboxSpec(backend="jupyter", placement=placement, **fields))


def my_kernel_containers(docker_client: Any) -> list[str]:
    mine = owner_id(os.getpid())
    return [
        c.short_id
        for c in docker_client.containers.list(
            all=True, filters={"label": f"{LABEL_BACKEND}=jupyter"}
        )
        if c.labels.get(LABEL_OWNER) == mine
    ]


def kernel_dirs() -> set[str]:
    """The provisioners' host directories (connection files, sockets, own workspaces)."""
    mine = f"execloop-kernel-{os.getpid()}."  # other processes' kernels are not this test's
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith(mine)}


@pytest.fixture(params=PLACEMENTS)
def placement(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- nbclient through the registered provisioners ----------------------------------------------
async def test_nbclient_runs_a_notebook_in_a_sandboxed_kernel(
    placement: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_client: Any
) -> None:
    installed = install_kernelspecs(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    before = kernel_dirs()
    kernel = json.loads((installed[PLACEMENTS.index(placement)] / "kernel.json").read_text())
    assert kernel["metadata"]["kernel_provisioner"]["provisioner_name"].startswith("execloop-")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("total = 6 * 7"),
        nbformat.v4.new_code_cell(
            "import os, socket\nprint(total, os.getuid(), socket.gethostname())"
        ),
        nbformat.v4.new_code_cell("sorted(name for _, name in socket.if_nameindex())"),
    ]
    client = NotebookClient(notebook, kernel_name=KERNEL_NAMES[placement], timeout=60)
    await client.async_execute()
    first, second, third = (cell.outputs for cell in notebook.cells)
    assert first == []
    # the sandbox's uid and hostname: the provisioner placed it, not a local kernel
    assert second == [{"output_type": "stream", "name": "stdout", "text": "42 1000 sandbox\n"}]
    assert third[0]["data"]["text/plain"] == "['lo']"  # no network but loopback
    assert my_kernel_containers(docker_client) == []  # the manager's shutdown removed it all
    assert kernel_dirs() <= before


async def test_the_container_kernel_is_labelled_and_network_less(docker_client: Any) -> None:
    async with jupyter("docker", labels={"com.example.team": "ml"}) as sandbox:
        manager = sandbox.kernel_manager
        assert manager is not None
        provisioner = manager.provisioner
        assert isinstance(provisioner, ContainerKernelProvisioner)
        container = docker_client.containers.get(provisioner._container.id)
        config = container.attrs["HostConfig"]
        assert container.labels["org.execloop.session"] == sandbox.session_id
        assert container.labels["com.example.team"] == "ml"  # the user's, beside ours
        assert config["NetworkMode"] == "none"
        assert config["ReadonlyRootfs"] is True
        assert config["CapDrop"] == ["ALL"]
        assert container.attrs["Config"]["User"] == "1000:1000"
        assert manager.transport == "ipc"
        assert manager.ip.startswith(str(provisioner.control_dir))  # the host-side path


# -- rich outputs --------------------------------------------------------------------------
PLOT_CELL = """
import matplotlib.pyplot as plt
from IPython.display import HTML, display
display(HTML('<b>report</b>'))
plt.plot([1, 2, 3], [3, 1, 2])
plt.show()
"""


async def test_displays_come_back_as_artifacts(placement: str) -> None:
    # both placements plot: the image carries matplotlib as the host's venv does
    async with jupyter(placement) as sandbox:
        drawn = await sandbox.exec(PLOT_CELL, timeout=120)
        result = await sandbox.exec("21 * 2")
        artifacts = {a.path: a for a in await sandbox.artifacts("outputs")}
        pngs = [a for path, a in artifacts.items() if path.endswith(".png")]
        png = await sandbox.read_file(pngs[0].path)
        html = await sandbox.read_file("outputs/exec-001-0.html")
    assert drawn.exit_reason is ExitReason.OK, drawn.stderr
    assert result.stdout == "42\n"  # an execute_result's text is kept in stdout
    assert html == b"<b>report</b>"
    assert png.startswith(b"\x89PNG")
    assert pngs[0].sha256 == hashlib.sha256(png).hexdigest()
    assert pngs[0].size_bytes == len(png)


# -- timeouts, interrupts, dead kernels ----------------------------------------------------
async def test_an_interruptible_timeout_keeps_the_session(placement: str) -> None:
    async with jupyter(placement) as sandbox:
        await sandbox.exec("kept = 'state'")
        started = time.monotonic()
        slow = await sandbox.exec("import time\nprint('before')\ntime.sleep(60)", timeout=1.0)
        elapsed = time.monotonic() - started
        after = await sandbox.exec("print(kept)")
    assert slow.exit_reason is ExitReason.TIMEOUT
    assert slow.stdout == "before\n"
    assert "interrupted and kept its state" in slow.stderr
    assert elapsed < 30  # interrupted at 1 s, not run for 60 (loose: no timing)
    assert after.stdout == "state\n"


async def test_a_loop_that_ignores_sigint_is_killed_and_restart_gives_a_fresh_kernel(
    placement: str, docker_client: Any
) -> None:
    async with jupyter(placement) as sandbox:
        await sandbox.exec("kept = 1")
        started = time.monotonic()
        stuck = await sandbox.exec(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
            timeout=1.0,
        )
        elapsed = time.monotonic() - started
        assert leftovers(sandbox.session_id, docker_client) == []  # container/process gone
        with pytest.raises(SandboxClosedError, match="ignored the interrupt"):
            await sandbox.exec("print(kept)")
        await sandbox.restart()
        fresh = await sandbox.exec("print('kept' in globals())")
    assert stuck.exit_reason is ExitReason.TIMEOUT
    assert stuck.exit_code is None
    assert 1.0 + INTERRUPT_GRACE_S <= elapsed < 30  # the grace was given, then the kill
    assert fresh.stdout == "False\n"


# descriptors are used up, then the cell fails (or runs into its deadline) holding them
_HOLD_EVERY_DESCRIPTOR = (
    "import os\nheld = []\ntry:\n    while True:\n"
    "        held.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError:\n    pass\n"
)


@pytest.mark.parametrize(
    ("ending", "outcome"),
    [("raise ValueError('after')", "ValueError: after"), ("import time\ntime.sleep(60)", "timed")],
    ids=["failed", "interrupted"],
)
async def test_the_kernel_checks_itself_after_failed_and_interrupted_cells(
    placement: str, ending: str, outcome: str
) -> None:
    """The check rides on IPython's post_run_cell event: no cell outcome escapes it, and the
    kernel's trouble is the result's reason."""
    async with jupyter(placement) as sandbox:
        # a failing cell ends by itself: only the interrupted one needs a short deadline
        deadline = 1.5 if ending.startswith("import time") else 30
        result = await sandbox.exec(_HOLD_EVERY_DESCRIPTOR + ending, timeout=deadline)
        assert sandbox.ended is not None and "file descriptors" in sandbox.ended
        with pytest.raises(SandboxClosedError, match="file descriptors"):
            await sandbox.exec("print(1)")
    assert (result.exit_code, result.exit_reason) == (1, ExitReason.ERROR), result.stderr
    assert outcome in result.stderr
    assert "execloop: the script used up the file descriptors" in result.stderr


async def test_a_dead_kernel_is_reported_as_killed(placement: str) -> None:
    async with jupyter(placement) as sandbox:
        dead = await sandbox.exec("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
        with pytest.raises(SandboxClosedError, match=r"the kernel died \(killed"):
            await sandbox.exec("print(1)")
        assert (await sandbox.artifacts()) == []  # the workspace outlives the kernel
    assert dead.exit_reason is ExitReason.KILLED
    assert dead.exit_code is None
    assert "the kernel died (killed" in dead.stderr


async def test_a_memory_bomb_is_oom(placement: str) -> None:
    """The container's cgroup, or the bubblewrap kernel's own (this host allows one)."""
    async with jupyter(placement, memory="128m") as sandbox:
        bomb = await sandbox.exec("chunks = []\nwhile True:\n    chunks.append(b'x' * 2**24)")
        with pytest.raises(SandboxClosedError, match="oom"):
            await sandbox.exec("print(1)")
    assert bomb.exit_reason is ExitReason.OOM
    assert "the kernel died (oom" in bomb.stderr


async def test_a_child_killed_by_oom_is_oom_each_time_and_the_kernel_lives_on(
    placement: str,
) -> None:
    """An exec's OOM-kill count starts from the last exec's reading (its strays were killed
    first): a second kill still shows, and a calm exec after it is OK."""
    hog = (
        "import subprocess, sys\n"
        "hog = 'b = bytearray(2**30)\\nfor i in range(0, 2**30, 4096): b[i] = 1'\n"
        "subprocess.run([sys.executable, '-c', hog])"
    )
    async with jupyter(placement, memory="128m") as sandbox:
        first = await sandbox.exec(hog)
        calm = await sandbox.exec("print('still here')")
        again, calm_again = await sandbox.exec(hog), await sandbox.exec("pass")
    assert (first.exit_reason, again.exit_reason) == (ExitReason.OOM, ExitReason.OOM)
    assert (calm.exit_reason, calm.stdout) == (ExitReason.OK, "still here\n")
    assert calm_again.exit_reason is ExitReason.OK


async def test_a_kernel_made_traceable_is_stopped(placement: str) -> None:
    """PTRACE_TRACEME leaves the kernel to stop at its next signal: the check after the cell
    sees its TracerPid and stops it."""
    async with jupyter(placement) as sandbox:
        traced = await sandbox.exec("import ctypes\nctypes.CDLL(None).ptrace(0, 0, 0, 0)")
        assert sandbox.ended is not None and "PTRACE_TRACEME" in sandbox.ended
    assert (traced.exit_code, traced.exit_reason) == (1, ExitReason.ERROR)
    assert "the kernel was stopped" in traced.stderr


async def test_the_bubblewrap_kernel_has_its_own_cgroup_gone_at_close() -> None:
    sandbox = jupyter("bubblewrap", cpus=0.5)  # a CPU quota: honoured, not refused
    async with sandbox:
        small = await sandbox.exec("x = 1")
        big = await sandbox.exec("block = bytearray(300 * 2**20)\ndel block")
        manager = sandbox.kernel_manager
        assert manager is not None
        cgroup = manager.provisioner.cgroup  # type: ignore[union-attr]
        assert cgroup is not None
        kernel = manager.provisioner.kernel_process()  # type: ignore[union-attr]
        inside = {int(pid) for pid in (cgroup.folders[0] / "cgroup.procs").read_text().split()}
        quota = (cgroup.dirs["cpu"] / "cpu.cfs_quota_us").read_text().split()
        await sandbox.restart()  # a fresh kernel, a fresh cgroup
        assert sandbox.kernel_manager is not None
        restarted = sandbox.kernel_manager.provisioner.cgroup  # type: ignore[union-attr]
        assert restarted is not None and restarted != cgroup
        assert not any(folder.exists() for folder in cgroup.folders)
    assert kernel.pid in inside and quota == ["50000"]
    assert small.peak_memory_bytes is not None and big.peak_memory_bytes is not None
    assert big.peak_memory_bytes >= small.peak_memory_bytes + 290 * 2**20  # the cgroup's peak
    assert not any(folder.exists() for folder in restarted.folders)


async def test_an_output_flood_is_stopped_and_the_session_survives(placement: str) -> None:
    async with jupyter(placement, max_output_bytes="16k", output_limit_bytes="256k") as sandbox:
        flood = await sandbox.exec("while True:\n    print('y' * 1000)")
        after = await sandbox.exec("print('still here')")
    assert flood.exit_reason is ExitReason.OUTPUT_LIMIT
    assert flood.stdout_truncated and len(flood.stdout.encode()) < 17_000
    assert after.stdout == "still here\n"


# -- isolation (network, uid, read-only root, host files, fork bombs: tests/security) ----
async def test_the_kernel_is_not_root_on_the_host_either(placement: str) -> None:
    async with jupyter(placement) as sandbox:
        await sandbox.exec("x = 1")
        manager = sandbox.kernel_manager
        assert manager is not None and manager.provisioner is not None
        kernel = manager.provisioner.kernel_process()  # type: ignore[attr-defined]
        host_uids = kernel.uids()
    assert host_uids.real == host_uids.effective == 1000


async def test_each_kernel_gets_its_own_hmac_key(placement: str) -> None:
    keys = []
    async with jupyter(placement) as first, jupyter(placement) as second:
        for sandbox in (first, second):
            manager = sandbox.kernel_manager
            assert manager is not None
            keys.append(manager.session.key)
            provisioner = manager.provisioner
            inner = json.loads(
                next(provisioner.control_dir.glob("kernel-*.json")).read_text()  # type: ignore[attr-defined]
            )
            assert inner["key"].encode() == manager.session.key  # the sandbox got the key
            assert inner["ip"] == "/run/execloop/kernel"
        await first.restart()
        assert first.kernel_manager is not None
        keys.append(first.kernel_manager.session.key)
    assert len(set(keys)) == 3 and all(len(key) >= 32 for key in keys)


# -- files ---------------------------------------------------------------------------------
async def test_exec_file_runs_a_script_with_arguments(placement: str) -> None:
    script = "import sys\nresult = sys.argv[1:]\nprint(__name__, *result)\nsys.exit(len(result))\n"
    async with jupyter(placement) as sandbox:
        await sandbox.upload({"jobs/job.py": script})
        ran = await sandbox.exec_file("jobs/job.py", args=["a", "b"])
        joined = await sandbox.exec("print(result)")
        missing = await sandbox.exec_file("jobs/nothing.py")
    assert ran.stdout == "__main__ a b\n"
    assert ran.exit_code == 2 and ran.exit_reason is ExitReason.ERROR
    assert joined.stdout == "['a', 'b']\n"  # the script's globals join the session
    assert missing.exit_reason is ExitReason.ERROR and "nothing.py" in missing.stderr


async def test_links_planted_by_the_sandbox_are_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    async with jupyter("docker") as sandbox:
        planted = await sandbox.exec(
            f"import os\nos.symlink({str(secret)!r}, 'leak')\nos.symlink({str(tmp_path)!r}, 'dir')"
        )
        assert planted.exit_reason is ExitReason.OK, planted.stderr
        with pytest.raises(TransferError, match="link"):
            await sandbox.read_file("leak")
        with pytest.raises(TransferError, match="link"):
            await sandbox.upload({"dir/evil.txt": "x"})
        assert await sandbox.artifacts() == []  # links are not artifacts
    assert not (tmp_path / "evil.txt").exists()
    assert secret.read_text() == "host secret"


async def test_close_leaves_no_container_process_or_directory(
    placement: str, docker_client: Any
) -> None:
    sandbox = jupyter(placement, keep_background_processes=True)
    async with sandbox:
        await sandbox.exec("import subprocess\nsleeper = subprocess.Popen(['sleep', '317'])")
        pid = await sandbox.exec("print(sleeper.pid)")
        manager = sandbox.kernel_manager
        assert manager is not None
        host_dirs = [Path(manager.connection_file).parent, sandbox.workspace_dir]
        assert leftovers(sandbox.session_id, docker_client), "the marker should be findable"
        assert _sleepers(), pid.stdout  # kept running: keep_background_processes=True
    assert leftovers(sandbox.session_id, docker_client) == []
    assert _sleepers() == []
    assert not any(path.exists() for path in host_dirs if path is not None)


def _sleepers() -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [])[-2:] == ["sleep", "317"]
    ]


async def test_set_up_code_that_fails_in_the_kernel_fails_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel whose checks and output limit were not installed is never handed out."""
    monkeypatch.setattr(jupyter_backend, "SESSION_HOOKS", "raise ValueError('broken hook')")
    before = kernel_dirs()
    sandbox = jupyter("bubblewrap")
    with pytest.raises(SandboxStartError, match=r"set-up code failed.*ValueError: broken hook"):
        await sandbox.start()
    assert kernel_dirs() == before
