"""A process killed with SIGKILL while it holds sandboxes of every backend leaves nothing: its
janitor removes the containers, process trees and temp dirs, without `execloop reap`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from execloop.sandboxes.reaper import LABEL_MANAGED, LABEL_OWNER

from .backends import BACKEND_SPECS, leftovers

_DEADLINE_S = 30.0  # a loaded machine; the janitor usually needs about a second

# Starts one sandbox per spec, leaves a background process in each (restricted cannot import
# subprocess), reports, then waits.
OWNER = """
import json, sys
import anyio
from execloop.sandboxes import SandboxSpec, create_sandbox

SLEEPER = "import subprocess\\nsubprocess.Popen(['sleep', '619'])"

async def main():
    held = []  # a collected sandbox closes its socket, and its helper exits
    for fields in json.loads(sys.argv[1]):
        sandbox = create_sandbox(SandboxSpec(keep_background_processes=True, **fields))
        held.append(sandbox)
        await sandbox.start()
        ran = await sandbox.exec("x = 1" if fields["backend"] == "restricted" else SLEEPER)
        assert ran.exit_reason.value == "ok", ran.stderr
    print(json.dumps([sandbox.session_id for sandbox in held]), flush=True)
    await anyio.sleep(600)

anyio.run(main)
"""


def _temp_dirs_of(pid: int) -> list[str]:
    return [name for name in os.listdir(tempfile.gettempdir()) if f"-{pid}." in name]


def _containers_of(pid: int, docker_client: Any) -> list[str]:
    owner = f"{socket.gethostname()}:{pid}:"
    listed = docker_client.containers.list(
        all=True, filters={"label": LABEL_MANAGED}, ignore_removed=True
    )
    return [c.short_id for c in listed if c.labels.get(LABEL_OWNER, "").startswith(owner)]


def _sleepers() -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline", "status"])
        if (p.info["cmdline"] or [])[-2:] == ["sleep", "619"]
        and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def test_a_sigkilled_owner_leaves_no_container_process_or_temp_dir(docker_client: Any) -> None:
    backends = ["docker", "local", "restricted", "jupyter-docker", "jupyter-bubblewrap"]
    child = subprocess.Popen(
        [sys.executable, "-c", OWNER, json.dumps([BACKEND_SPECS[b] for b in backends])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        sessions = json.loads(child.stdout.readline())
        assert len(sessions) == len(backends)
        for session in sessions:
            assert leftovers(session, docker_client), "each sandbox should be findable"
        assert _temp_dirs_of(child.pid) and _containers_of(child.pid, docker_client)
        assert len(_sleepers()) == len(backends) - 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    def remaining() -> list[str]:
        found = [item for session in sessions for item in leftovers(session, docker_client)]
        found += _temp_dirs_of(child.pid) + _containers_of(child.pid, docker_client)
        return found + [f"sleeper {pid}" for pid in _sleepers()]

    deadline = time.monotonic() + _DEADLINE_S
    while remaining() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert remaining() == []
