"""Process lifecycle: daemons that outlive their exec or its timeout, signals to the parent and
to every process in reach, host processes in sight.

Daemons carry the suite's marker on their command line; after every attack the runner looks
for it among the host's processes (none may be left). The destructive step of a signal
attack runs only where it is claimed to be contained (``armed``): the weakened run probes with
signal 0 which processes it could have killed.
"""

from __future__ import annotations

from execloop.sandboxes import ExecResult, ExitReason

from .attacks import ESCAPED, ISOLATING, Attack, Category, Decoys, printed, probe, reason_in
from .weakenings import HOST_PID, PLAIN

__all__ = ["LIFECYCLE_ATTACKS"]

L = Category.LIFECYCLE
ENDED = reason_in(ExitReason.OK, ExitReason.ERROR, ExitReason.KILLED, absent="ESCAPED")
SURVIVED = printed("[survivors 1]")

DOUBLE_FORK = """
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}])
    os._exit(0)
os.wait()
print('daemon started')
"""

DAEMON_THEN_SPIN = """
import subprocess, sys, time
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
end = time.monotonic() + 5
while time.monotonic() < end:
    pass
print('spun to the end')
"""

KILL_PARENT = """
import os, signal
parent = os.getppid()
if parent == 0:
    print('BLOCKED the parent is outside this PID namespace')
else:
    os.kill(parent, 0)
    print('parent', parent, 'signalable', flush=True)
    if {armed}:
        os.kill(parent, signal.SIGKILL)
"""

KILL_EVERYTHING = """
import os, signal
seen = []
for pid in [int(p) for p in os.listdir('/proc') if p.isdigit()]:
    try:
        os.kill(pid, 0)
        seen.append(pid)
    except OSError:
        pass
print('ESCAPED' if {peer_pid} in seen else 'BLOCKED', 'signalable:', len(seen), flush=True)
if {armed}:
    os.kill(-1, signal.SIGKILL)
"""


def refused_forgery(result: ExecResult, decoys: Decoys) -> str | None:
    if result.exit_reason is ExitReason.ERROR and "broke the protocol" in result.stderr:
        return None
    return f"ended {result.exit_reason.value}: {result.stdout[-200:]!r} {result.stderr[-300:]!r}"


# The user's code shares the helper's process: it can write to execloop's control socket.
FORGED_FRAMES = """
import os, socket, stat, struct
for fd in range(3, 256):
    try:
        if stat.S_ISSOCK(os.fstat(fd).st_mode):
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.sendall(struct.pack('!IQ', 10, 0) + b'not json!!' + b'\\xff' * 64)
    except OSError:
        pass
print('ESCAPED the host took the forged frames')
"""

HOST_PROCESS = """
import os
try:
    os.kill({host_pid}, 0)
    print('ESCAPED the host process is in reach')
except PermissionError:
    print('ESCAPED the host process is visible')
except ProcessLookupError:
    print('BLOCKED no such process')
"""

LIFECYCLE_ATTACKS = [
    Attack(
        "a double-forked daemon outliving its exec",
        L,
        ISOLATING,
        DOUBLE_FORK,
        reason_in(ExitReason.OK),
        PLAIN,
        SURVIVED,
    ),
    Attack(
        "a daemon outliving the exec's timeout",
        L,
        ISOLATING,
        DAEMON_THEN_SPIN,
        reason_in(ExitReason.TIMEOUT),
        PLAIN,
        SURVIVED,
        timeout_s=1,
    ),
    Attack(
        "SIGKILL to the parent",
        L,
        ISOLATING,
        KILL_PARENT,
        ENDED,
        PLAIN,
        printed("signalable"),
    ),
    Attack(
        "kill(-1, SIGKILL) against a host process of the same uid",
        L,
        ISOLATING,
        KILL_EVERYTHING,
        ENDED,
        HOST_PID,
        ESCAPED,
    ),
    probe("see a host process", L, HOST_PROCESS, HOST_PID),
    Attack(
        "forged frames on the helper's control socket",
        L,
        ("docker", "local"),
        FORGED_FRAMES,
        refused_forgery,
        None,
        None,
        self_evident="the host's answer quotes the bytes it refused",
    ),
]
