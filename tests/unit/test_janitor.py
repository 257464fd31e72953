"""The janitor: whatever an owner still holds when it dies, however it dies, is removed.

Each test runs a real owner (a child Python process), real process trees and real directories,
kills the owner, and waits (bounded) for the janitor to have cleaned up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from execloop.sandboxes import janitor

_DEADLINE_S = 30.0  # a loaded CI machine; the janitor normally needs well under a second

# An owner: runs the steps it is given, reports, then waits to be killed.
OWNER = """
import json, os, signal, subprocess, sys, time
from execloop.sandboxes import janitor
# as some CLIs do; writing to a dead janitor must not kill the owner then
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
report = {}
def say(report):  # one write: the fork and its parent share the pipe
    os.write(1, (json.dumps(report) + "\\n").encode())
def tree(argv):
    process = subprocess.Popen(argv, start_new_session=True)
    return process.pid, janitor.watch(janitor.process_tree(process.pid))
for step in json.loads(sys.argv[1]):
    kind, arg = step
    if kind == "dir":
        janitor.watch(janitor.path(arg))
    elif kind == "forget-dir":
        janitor.forget(janitor.path(arg))
    elif kind == "tree":
        report.setdefault("trees", []).append(tree(arg)[0])
    elif kind == "kill-janitor":
        report.setdefault("janitors", []).append(janitor.janitor_pid())
        os.kill(janitor.janitor_pid(), 9)
        time.sleep(0.2)
    elif kind == "fork":
        child = os.fork()
        if child == 0:
            say({"child_janitor": janitor.janitor_pid()})
            time.sleep(600)
            os._exit(0)
        report["forked"] = child
report["janitors"] = report.get("janitors", []) + [janitor.janitor_pid()]
say(report)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + _DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class Owner:
    def __init__(self, steps: list[Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", OWNER, json.dumps(steps)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a shell job would be
        )
        assert self.process.stdout is not None
        self.lines = [json.loads(self.process.stdout.readline())]
        if any(step[0] == "fork" for step in steps):
            self.lines.append(json.loads(self.process.stdout.readline()))
        self.report = self.lines[-1] if "janitors" in self.lines[-1] else self.lines[0]

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        """What a terminal's Ctrl-C, or a CI's timeout, does: the whole process group."""
        os.killpg(self.process.pid, signum)
        self.process.wait()


@pytest.fixture
def owners() -> Iterator[list[Owner]]:
    made: list[Owner] = []
    yield made
    for owner in made:  # a failed test must not leave its owner (or its fork) behind
        for pid in [owner.process.pid, owner.report.get("forked")]:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        owner.process.wait()


def test_a_killed_owners_dirs_and_process_trees_are_removed(
    tmp_path: Path, owners: list[Owner]
) -> None:
    kept, watched = tmp_path / "kept", tmp_path / "watched"
    for folder in (kept, watched):
        (folder / "sub").mkdir(parents=True)
    (watched / "link").symlink_to(kept)  # never followed
    owner = Owner(
        [
            ["dir", str(watched)],
            ["dir", str(kept)],
            ["forget-dir", str(kept)],
            ["tree", ["sh", "-c", "sleep 611 & sleep 612"]],
        ]
    )
    owners.append(owner)
    (janitor_pid,) = owner.report["janitors"]
    (leader,) = owner.report["trees"]
    assert _eventually(lambda: len(psutil.Process(leader).children()) == 2)
    tree = [leader, *(child.pid for child in psutil.Process(leader).children())]
    # its own session: a signal to the owner's process group never reaches it
    assert os.getsid(janitor_pid) == janitor_pid != os.getsid(owner.process.pid)

    owner.kill_group()

    assert _eventually(lambda: not watched.exists())
    assert _eventually(lambda: not any(_alive(pid) for pid in [*tree, janitor_pid]))
    assert (kept / "sub").is_dir()  # forgotten: released normally, not the janitor's


def test_survivors_of_a_dead_group_leader_are_killed(tmp_path: Path, owners: list[Owner]) -> None:
    # as root, bwrap's setpriv child outlives its parent (a uid change clears the death signal)
    owner = Owner([["tree", ["sh", "-c", "sleep 613 & wait"]]])
    owners.append(owner)
    (leader,) = owner.report["trees"]
    assert _eventually(lambda: len(psutil.Process(leader).children()) == 1)
    (survivor,) = psutil.Process(leader).children()
    os.kill(leader, signal.SIGKILL)  # reparented now, but still in the leader's group
    assert _eventually(lambda: not _alive(leader))
    assert _alive(survivor.pid)

    owner.kill_group()

    assert _eventually(lambda: not _alive(survivor.pid))


def test_a_killed_janitor_is_replaced_and_learns_what_is_held(
    tmp_path: Path, owners: list[Owner]
) -> None:
    first, second, released = tmp_path / "first", tmp_path / "second", tmp_path / "released"
    for folder in (first, second, released):
        folder.mkdir()
    steps = [["dir", str(first)], ["dir", str(released)], ["kill-janitor", None]]
    steps += [["forget-dir", str(released)], ["dir", str(second)]]  # the forget finds it dead
    owner = Owner(steps)
    owners.append(owner)
    killed, replacement = owner.report["janitors"]
    assert killed != replacement and _alive(replacement)

    owner.kill_group()

    assert _eventually(lambda: not first.exists() and not second.exists())
    assert released.exists()


def test_a_forked_child_neither_inherits_the_janitor_nor_delays_it(
    tmp_path: Path, owners: list[Owner]
) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    owner = Owner([["dir", str(watched)], ["fork", None]])
    owners.append(owner)
    child_report = next(line for line in owner.lines if "child_janitor" in line)
    assert child_report["child_janitor"] is None  # the parent's resources are not the child's

    os.kill(owner.process.pid, signal.SIGKILL)  # the parent only: its fork lives on
    owner.process.wait()

    assert _eventually(lambda: not watched.exists())
    assert _alive(owner.report["forked"])


def test_one_janitor_per_process_and_a_cheap_registration(tmp_path: Path) -> None:
    resources = [janitor.watch(janitor.path(tmp_path / f"d{i}")) for i in range(20)]
    pid = janitor.janitor_pid()
    assert pid is not None and _alive(pid)
    for resource in resources:
        janitor.forget(resource)
    janitor.forget(resources[0])  # idempotent
    assert janitor.janitor_pid() == pid
    assert os.getsid(pid) == pid  # in its own session
    assert _eventually(lambda: psutil.Process(pid).cwd() == "/")  # holds no directory busy


def test_resources_name_what_the_janitor_removes(tmp_path: Path) -> None:
    assert janitor.path("rel") == janitor.Resource("path", os.path.abspath("rel"))
    own = janitor.process_tree(os.getpid())
    assert own.key == f"{os.getpid()}.{janitor.process_start_ticks(os.getpid())}"
    labels = janitor.containers({"b": "2", "a": "1"})
    assert json.loads(labels.key) == ["a=1", "b=2"]  # all of them, in one filter


def test_a_burst_sent_while_the_janitor_rests_is_read_whole() -> None:
    """The janitor reads between rests (a send does not wake it): nothing of a burst is lost,
    and what was released in it is not held."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    held: dict[tuple[str, str], None] = {}
    reader = threading.Thread(target=lambda: held.update(janitor._read_until_eof(theirs.fileno())))
    reader.start()
    ours.send(b'["+", "path", "/first"]\n')  # wakes it; it then rests while the burst queues
    for number in range(150):
        ours.send(json.dumps(["+", "path", f"/burst/{number}"]).encode() + b"\n")
        if number % 2:
            ours.send(json.dumps(["-", "path", f"/burst/{number}"]).encode() + b"\n")
    ours.close()  # the owner is gone
    reader.join(timeout=_DEADLINE_S)
    theirs.close()
    assert not reader.is_alive()
    assert set(held) == {("path", "/first")} | {("path", f"/burst/{n}") for n in range(0, 150, 2)}
