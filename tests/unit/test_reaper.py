from __future__ import annotations

import os
import socket
import subprocess
import sys

from execloop.sandboxes.reaper import is_orphan, owner_id


def test_a_live_owner_is_not_an_orphan() -> None:
    assert not is_orphan(owner_id())


def test_a_dead_owner_is_an_orphan() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = owner_id(child.pid)
    child.wait()
    assert is_orphan(owner)


def test_a_recycled_pid_is_not_mistaken_for_the_owner() -> None:
    host = socket.gethostname()
    assert is_orphan(f"{host}:{os.getpid()}:0")  # same pid, other start time


def test_another_hosts_container_is_left_alone() -> None:
    assert not is_orphan("some-other-host:1:1")
    assert not is_orphan("garbage")
