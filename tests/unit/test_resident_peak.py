"""The process placement's memory reading where no cgroup counts: a process's VmHWM."""

from __future__ import annotations

import subprocess
import sys

from execloop.sandboxes.placements.process import _resident_peak


def test_resident_peak_is_the_processes_vmhwm() -> None:
    """Read from /proc/<pid>/status in one read, around every exec."""
    touch = "b = b'x' * (64 << 20); print('ready', flush=True); import sys; sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", touch], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        peak = _resident_peak(child.pid)  # the child only waits now: its high-water mark holds
        with open(f"/proc/{child.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        assert peak is not None and peak >= 64 << 20
        assert peak == int(line.split()[1]) * 1024
    finally:
        child.kill()
        child.wait()
    assert _resident_peak(child.pid) is None  # gone: no reading, no error
