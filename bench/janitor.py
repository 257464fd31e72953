"""What the janitor costs the first sandbox start, and how soon it cleans up after a SIGKILL.

    python bench/janitor.py [--rounds N]

Each round is a fresh Python process (the janitor is spawned once per process, so only a fresh
one pays for it): it times its first ``make_temp_dir`` (which spawns the janitor) and its second
(which only sends a message), then a ``LocalSandbox`` start for scale. Then an owner holding a
directory is killed with SIGKILL and the time until the directory is gone is measured. Prints
p50s and the ratios; no targets are enforced (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROUND = """
import json, time
import anyio
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.local_backend import LocalSandbox
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

started = time.perf_counter()
first = make_temp_dir("bench")
spawned = time.perf_counter()
second = make_temp_dir("bench")
sent = time.perf_counter()
remove_temp_dir(first)
remove_temp_dir(second)

async def local_start():
    sandbox = LocalSandbox(SandboxSpec(backend="local"))
    begin = time.perf_counter()
    await sandbox.start()
    took = time.perf_counter() - begin
    await sandbox.close()
    return took

print(json.dumps({
    "spawn": spawned - started, "message": sent - spawned, "local": anyio.run(local_start),
}))
"""

HOLDER = """
import sys, time
from execloop.sandboxes.tempdirs import make_temp_dir
print(make_temp_dir("bench"), flush=True)
time.sleep(600)
"""


def _cleanup_latency() -> float:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    folder = Path(holder.stdout.readline().strip())
    time.sleep(0.5)  # the janitor is up and has read the message
    os.kill(holder.pid, signal.SIGKILL)
    killed = time.perf_counter()
    holder.wait()
    while folder.exists() and time.perf_counter() - killed < 30:
        time.sleep(0.002)
    return time.perf_counter() - killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    rounds = parser.parse_args().rounds
    samples: dict[str, list[float]] = {"spawn": [], "message": [], "local": [], "cleanup": []}
    for _ in range(rounds):
        done = subprocess.run(
            [sys.executable, "-c", ROUND], capture_output=True, text=True, check=True
        )
        for name, value in json.loads(done.stdout).items():
            samples[name].append(value)
        samples["cleanup"].append(_cleanup_latency())
    p50 = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"rounds: {rounds} (p50, ms)")
    print(f"  janitor spawn (first registration): {p50['spawn']:8.2f}")
    print(f"  a registration afterwards:          {p50['message']:8.3f}")
    print(f"  LocalSandbox.start():               {p50['local']:8.1f}")
    print(f"  SIGKILL of the owner -> dir gone:   {p50['cleanup']:8.1f}")
    print(f"ratio spawn / LocalSandbox start: {p50['spawn'] / p50['local']:.3f}")
    print(f"ratio spawn / later registration: {p50['spawn'] / p50['message']:.0f}")


if __name__ == "__main__":
    main()
