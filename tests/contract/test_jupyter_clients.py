"""Real Jupyter clients on the installed execloop kernelspecs: papermill, nbconvert, jupyter
console and jupyter run, each run as a user would run it (a separate process).

What each leaves behind is checked by the kernel's session id (container label, command lines:
``backends.leftovers``), by the client's pid (temp dir names, the owner label of containers),
and in Jupyter's runtime dir (the connection file holding the kernel's HMAC key).
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager

from execloop.sandboxes.kernelspecs import KERNEL_NAMES, install_kernelspecs
from execloop.sandboxes.reaper import LABEL_MANAGED, LABEL_OWNER, LABEL_SESSION

from .backends import leftovers

PLACEMENTS = ["docker", "bubblewrap"]
BIN = Path(sys.executable).parent
_DEADLINE_S = 30.0  # "within a few seconds" on a loaded machine; usually about one
# The kernel's own command line names its session: /run/execloop/kernel-<session>.json
SESSION_CODE = "import sys; print('SESSION', sys.argv[sys.argv.index('-f') + 1])"
_SESSION = re.compile(r"SESSION /run/execloop/kernel-([0-9a-z]+)\.json")
PLOT_CELL = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()"


@pytest.fixture(params=PLACEMENTS)
def kernel(request: pytest.FixtureRequest) -> str:
    return KERNEL_NAMES[request.param]


@pytest.fixture
def jupyter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The kernelspecs installed in a private prefix, a private runtime dir, unbuffered output
    (the clients print as the kernel does)."""
    (tmp_path / "prefix").mkdir()
    install_kernelspecs(tmp_path / "prefix")
    env = {
        "JUPYTER_PATH": str(tmp_path / "prefix" / "share" / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "PYTHONUNBUFFERED": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, **env}


def session_of(output: str) -> str:
    match = _SESSION.search(output)
    assert match, output[-2000:]
    return match[1]


def left_by(pid: int, session: str, docker_client: Any, env: dict[str, str]) -> list[str]:
    """Everything the client ``pid`` and its kernel ``session`` still have on this host."""
    found = leftovers(session, docker_client)
    found += [f"dir {n}" for n in os.listdir(tempfile.gettempdir()) if f"-{pid}." in n]
    owner = f"{socket.gethostname()}:{pid}:"
    listed = docker_client.containers.list(
        all=True, filters={"label": LABEL_MANAGED}, ignore_removed=True
    )
    for container in listed:
        if container.labels.get(LABEL_OWNER, "").startswith(owner):
            found.append(f"container {container.short_id} ({container.status})")
    runtime = Path(env["JUPYTER_RUNTIME_DIR"])
    found += (
        [f"runtime file {p.name}" for p in runtime.glob("kernel-*")] if runtime.exists() else []
    )
    return found


def assert_nothing_left(pid: int, session: str, docker_client: Any, env: dict[str, str]) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while left_by(pid, session, docker_client, env) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left_by(pid, session, docker_client, env) == []


# -- notebooks with a plot, through papermill and nbconvert ------------------------------------
@pytest.mark.parametrize("tool", ["papermill", "nbconvert"])
def test_a_notebook_with_a_plot_runs_on_the_kernel(
    tool: str, kernel: str, tmp_path: Path, jupyter_env: dict[str, str], docker_client: Any
) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(PLOT_CELL), nbformat.v4.new_code_cell(SESSION_CODE)]
    source, executed = tmp_path / "plot.ipynb", tmp_path / "out" / "plot.ipynb"
    nbformat.write(notebook, source)
    if tool == "papermill":
        executed.parent.mkdir()
        argv = [str(BIN / "papermill"), str(source), str(executed), "-k", kernel]
    else:
        argv = [str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute"]
        argv += [
            f"--ExecutePreprocessor.kernel_name={kernel}",
            "--output-dir",
            str(executed.parent),
        ]
        argv += [str(source)]
    client = subprocess.Popen(
        argv, env=jupyter_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = client.communicate(timeout=240)
    assert client.returncode == 0, output.decode()[-3000:]

    plot, printed = nbformat.read(executed, as_version=4).cells
    pngs = [o["data"]["image/png"] for o in plot.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, plot.outputs
    assert base64.b64decode(pngs[0]).startswith(b"\x89PNG")
    assert_nothing_left(
        client.pid, session_of(printed.outputs[0]["text"]), docker_client, jupyter_env
    )


# -- jupyter console: exit only sends a shutdown request ---------------------------------------
def test_jupyter_console_exit_leaves_nothing(
    kernel: str, jupyter_env: dict[str, str], docker_client: Any
) -> None:
    console = subprocess.Popen(
        [str(BIN / "jupyter"), "console", "--kernel", kernel, "--simple-prompt"],
        env=jupyter_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = console.communicate(f"{SESSION_CODE}\nprint(6 * 7)\nexit\n", timeout=240)
    except subprocess.TimeoutExpired:
        console.kill()  # a hung console must not outlive its test (its janitor then cleans up)
        raise
    assert console.returncode == 0, output[-3000:]
    assert "42" in output and "Shutting down kernel" in output
    assert_nothing_left(console.pid, session_of(output), docker_client, jupyter_env)


# -- jupyter run, killed while its script runs --------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_jupyter_run_leaves_nothing(
    signum: int, kernel: str, tmp_path: Path, jupyter_env: dict[str, str], docker_client: Any
) -> None:
    script = tmp_path / "slow.py"
    script.write_text(f"{SESSION_CODE}\nimport time\nwhile True:\n    time.sleep(0.5)\n")
    run = subprocess.Popen(
        [str(BIN / "jupyter"), "run", "--kernel", kernel, str(script)],
        env=jupyter_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert run.stdout is not None
        output = ""
        while "SESSION" not in output:  # the kernel runs the script: it is up
            line = run.stdout.readline()
            assert line, output[-3000:]
            output += line
        session = session_of(output)
        assert leftovers(session, docker_client), "the kernel should be findable while it runs"
    finally:
        run.send_signal(signum)
        run.wait(timeout=60)
    assert_nothing_left(run.pid, session, docker_client, jupyter_env)


# -- a kernel that exits on a shutdown request, its client still alive -------------------------
@pytest.mark.anyio
async def test_an_exited_kernel_leaves_no_exited_container(
    jupyter_env: dict[str, str], docker_client: Any
) -> None:
    manager = AsyncKernelManager(kernel_name=KERNEL_NAMES["docker"])
    await manager.start_kernel()
    try:
        session = (await manager.provisioner.get_provisioner_info())["session_id"]  # type: ignore[union-attr]
        mine = {"label": f"{LABEL_SESSION}={session}"}
        assert docker_client.containers.list(all=True, filters=mine)
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=60)
        client.shutdown()  # what jupyter console does, and nothing more
        with anyio.move_on_after(_DEADLINE_S):
            while await manager.is_alive():  # noqa: ASYNC110  # a poll, as a client's restarter
                await anyio.sleep(0.1)
        client.stop_channels()
        assert not await manager.is_alive()
        assert await manager.provisioner.poll() == 0  # type: ignore[union-attr]  # it exited cleanly
        assert docker_client.containers.list(all=True, filters=mine) == []  # none left Exited
    finally:
        await manager.shutdown_kernel(now=True)
