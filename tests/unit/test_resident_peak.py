"""The process placement's memory reading where no cgroup counts: a process's VmHWM."""

from __future__ import annotations

import subprocess
import sys
import time

from execloop.sandboxes.placements.process import _resident_peak


def test_resident_peak_is_the_processes_vmhwm() -> None:
    """Read from /proc/<pid>/status in one read, around every exec."""
    child = subprocess.Popen(
        [sys.executable, "-c", "b = bytearray(64 << 20); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        while (peak := _resident_peak(child.pid)) is None or peak < 64 << 20:
            assert child.poll() is None, "the child exited before it touched its 64 MiB"
            time.sleep(0.01)
        with open(f"/proc/{child.pid}/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        assert peak == int(line.split()[1]) * 1024
    finally:
        child.kill()
        child.wait()
    assert _resident_peak(child.pid) is None  # gone: no reading, no error
