"""The process placement's pure parts and its tree kill, on plain host processes (no bubblewrap)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time

import psutil
import pytest

from execloop.errors import ConfigError
from execloop.sandboxes.placements.process import (
    NOFILE,
    cpu_seconds,
    kill_tree,
    nproc_per_sandbox,
    refuse,
    rlimit_argv,
)
from execloop.sandboxes.placements.spawner import SPAWNER
from execloop.sandboxes.restricted_backend import RestrictedSandbox, restricted_argv
from execloop.sandboxes.spec import SandboxSpec


def test_rlimits_follow_the_spec() -> None:
    spec = SandboxSpec(memory="256m", pids=64, workspace_size="8m", timeout_s=120)
    argv = rlimit_argv(spec, prlimit="/usr/bin/prlimit")
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = NOFILE if nofile_hard == resource.RLIM_INFINITY else min(NOFILE, nofile_hard)
    common = [f"--fsize={8 * 1024**2}", f"--nofile={nofile}", "--cpu=12000", "--core=0", "--"]
    # without a cgroup: private writable memory (not address space) and the per-uid budget
    assert argv == ["/usr/bin/prlimit", f"--data={256 * 1024**2}", "--nproc=64", *common]
    # in a cgroup, memory and processes are the cgroup's
    in_cgroup = rlimit_argv(spec, prlimit="/usr/bin/prlimit", in_cgroup=True)
    assert in_cgroup == ["/usr/bin/prlimit", *common]


def test_nproc_is_per_sandbox_from_linux_5_14() -> None:
    assert nproc_per_sandbox("6.18.44-fc-v1045") and nproc_per_sandbox("5.14.0-rc1")
    assert not nproc_per_sandbox("5.13.19") and not nproc_per_sandbox("4.19.0-26-amd64")
    assert not nproc_per_sandbox("weird")


def test_cpu_backstop_is_generous_and_grows_with_the_timeout() -> None:
    assert cpu_seconds(SandboxSpec(timeout_s=1)) == 3600
    assert cpu_seconds(SandboxSpec(timeout_s=600)) == 60_000


def test_refuse_names_the_field_and_the_advice() -> None:
    refuse(SandboxSpec(), backend="x", unsupported={"gpus": "no"})  # defaults pass
    with pytest.raises(ConfigError, match=r"the x backend cannot honour pids=32: advice"):
        refuse(SandboxSpec(pids=32), backend="x", unsupported={"pids": "advice"})


def test_restricted_refuses_what_it_cannot_honour_and_runs_the_runner_file() -> None:
    with pytest.raises(ConfigError, match="the restricted backend cannot honour gpus"):
        RestrictedSandbox(SandboxSpec(backend="restricted", gpus=("0",)))
    with pytest.raises(ConfigError, match="cannot honour image="):
        RestrictedSandbox(SandboxSpec(backend="restricted", image="python:3.11"))
    from pathlib import Path

    argv = restricted_argv(
        SandboxSpec(), session_id="s1", socket_dir=Path("/s"), workspace=Path("/w")
    )
    runner = argv.index(sys.executable) + 1
    assert argv[runner].endswith("sandboxes/restricted_runner.py")
    assert argv[runner + 1 :] == ["/s/ctl.sock", "--workspace", "/w", "--session", "s1"]


def test_kill_tree_takes_the_group_and_setsid_descendants() -> None:
    code = (
        "import subprocess, time\n"
        "subprocess.Popen(['sleep', '60'])\n"
        "subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)"
    )
    root = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert root.stdout is not None and root.stdout.readline() == b"ready\n"
    tree = psutil.Process(root.pid).children(recursive=True)
    assert len(tree) == 2
    started = time.monotonic()
    kill_tree(root.pid)
    assert root.wait(timeout=5) == -9
    assert time.monotonic() - started < 3
    assert all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in tree)
    kill_tree(root.pid)  # a reaped pid: nothing to do, no error


def test_sandboxes_are_forked_by_threads_that_outlive_every_start() -> None:
    """bwrap's --die-with-parent ends a sandbox when the *thread* that forked it exits: the
    spawner's threads are neither the caller's nor worker threads that idle out."""
    ran_on = [SPAWNER.submit(threading.current_thread).result(timeout=10) for _ in range(8)]
    assert all(t.name.startswith("execloop-spawner-") and t.is_alive() for t in ran_on)
    assert threading.current_thread() not in ran_on

    def fails() -> None:
        raise OSError("no such program")

    with pytest.raises(OSError, match="no such program"):  # the awaiting start raises it
        SPAWNER.submit(fails).result(timeout=10)


def test_a_forked_child_gets_spawner_threads_of_its_own() -> None:
    """The parent's spawner threads do not exist in a forked child: it starts its own."""
    SPAWNER.submit(lambda: None).result(timeout=10)  # the parent's threads exist
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report whether a fork request completes, then leave at once
        try:
            done = SPAWNER.submit(threading.current_thread).result(timeout=10)
            os.write(write, done.name.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        said = reader.read().decode()
    os.waitpid(child, 0)
    assert said.startswith("execloop-spawner-")
