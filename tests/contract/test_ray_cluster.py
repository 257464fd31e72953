"""The broker on a real two-node Ray cluster (issue 14): tasks spread over both nodes, one node
is removed mid-run, and every task still ends with exactly one stored result; no container of
the lost node remains.

The cluster runs in ``tests/contract/ray_child.py`` inside a private network namespace with
only ``lo`` up (``unshare --net``): Ray binds 127.0.0.1 there and no packet can leave loopback.
Deselect it locally with ``-m 'not ray'``; CI runs it (scripts/setup.sh installs the ray extra).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.contract.test_readme import readme_blocks

pytestmark = [pytest.mark.ray, pytest.mark.docker, pytest.mark.timeout(240)]

CHILD = Path(__file__).with_name("ray_child.py")
REPO = Path(__file__).resolve().parents[2]
SECTION = "### Many sub-agents, one machine or a Ray cluster"


@pytest.fixture
def ray_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment for a Ray cluster of a test: token authentication off (it is for real
    clusters) and Ray's sessions (logs, sockets) in a private folder removed afterwards. The
    folder is short: Unix socket paths inside it must stay under 108 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    try:
        yield {
            **os.environ,
            "RAY_AUTH_MODE": "disabled",
            "RAY_TMPDIR": str(folder),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": str(tmp_path),  # ray start writes ~/.ray; nothing of the user's is touched
        }
        assert not _processes_of(folder), "Ray processes of the test are still running"
    finally:
        for process in _processes_of(folder):  # only after a failure: never leave them
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _processes_of(folder: Path, wait_s: float = 15.0) -> list[psutil.Process]:
    """Processes whose command line names ``folder`` (Ray's daemons name their session),
    after giving them ``wait_s`` to exit."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if any(str(folder) in part for part in process.info["cmdline"] or ()):
                found.append(process)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_lost_node_costs_no_task_and_leaves_no_container(
    tmp_path: Path, ray_env: dict[str, str]
) -> None:
    assert shutil.which("unshare"), "util-linux's unshare is needed for a private network"
    db = tmp_path / "runs.db"
    inner = f"ip link set lo up && exec {sys.executable} {CHILD} --backend docker --db {db}"
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", inner],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
        env=ray_env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, (done.stdout[-1000:], done.stderr[-3000:])
    report = json.loads(lines[-1])

    assert report["statuses"] == {f"ray-{n:02d}": "passed" for n in range(20)}, report["errors"]
    assert report["results_per_task"] == {f"ray-{n:02d}": 1 for n in range(20)}
    assert len(report["nodes"]) == 2 and set(report["ran_on"]) == set(report["nodes"])
    assert report["alive_after"] == [n for n in report["nodes"] if n != report["second"]]
    assert report["sandboxes_at_removal"] > 0  # the lost node had containers running
    assert report["node_losses"] >= 1  # its tasks were queued again on the other node
    assert report["containers_left"] == []


def test_the_readme_ray_commands_run_as_written(tmp_path: Path, ray_env: dict[str, str]) -> None:
    """``--ray auto`` against a cluster ``ray start`` made, then ``--ray local``: each task
    passes and is stored (README block, in a private network namespace)."""
    (block,) = [b for b in readme_blocks() if SECTION in b.sections and b.lang == "bash"]
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    script = tmp_path / "block.sh"
    # a failing command must not leave the cluster `ray start` made running
    prologue = "set -e\ntrap 'ray stop --force > /dev/null 2>&1' EXIT\nip link set lo up\n"
    script.write_text(prologue + block.code)
    done = subprocess.run(
        ["unshare", "--net", "bash", str(script)],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
        env=ray_env,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    said = done.stdout + done.stderr  # the summary goes to the console (stderr)
    assert said.count("passed after 1 attempt(s)") == 2, said[-3000:]
    assert said.count("stored in runs.db") == 2
