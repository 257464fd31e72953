"""The broker on a real two-node Ray cluster (issue 14): tasks spread over both nodes, one node
is removed mid-run, and every task still ends with exactly one stored result; no container of
the lost node remains.

The cluster runs in ``tests/contract/ray_child.py`` inside a private network namespace with
only ``lo`` up (``unshare --net``): Ray binds 127.0.0.1 there and no packet can leave loopback.
Deselect it locally with ``-m 'not ray'``; CI runs it (scripts/setup.sh installs the ray extra).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.docker, pytest.mark.timeout(240)]

CHILD = Path(__file__).with_name("ray_child.py")


def test_a_lost_node_costs_no_task_and_leaves_no_container(tmp_path: Path) -> None:
    assert shutil.which("unshare"), "util-linux's unshare is needed for a private network"
    db = tmp_path / "runs.db"
    inner = f"ip link set lo up && exec {sys.executable} {CHILD} --backend docker --db {db}"
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", inner],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=tmp_path,
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
