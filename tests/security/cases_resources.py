"""Resource exhaustion: every one ends as an ``ExecResult`` with a reason, and the next exec
(or a fresh sandbox) works. Limits come from ``runner.SUITE_SPEC`` (64 pids, 256 MiB, 8 MiB
of /tmp, 16 MiB of workspace, 4 MiB of output); each script stops by itself well past them,
so its weakened run (``LIMITS``/``PLAIN``) ends and shows it got there."""

from __future__ import annotations

from execloop.sandboxes import ExitReason

from .attacks import ALL_BACKENDS, ISOLATING, Attack, Category, printed, reason_in
from .weakenings import LIMITS, PLAIN

__all__ = ["RESOURCE_ATTACKS"]

R = Category.RESOURCES
ENDED = (ExitReason.OK, ExitReason.ERROR, ExitReason.KILLED, ExitReason.OOM)

FORK_BOMB = """
import os, time
children = 0
try:
    while children < 400:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        children += 1
    print('ESCAPED forked', children)
except OSError as exc:
    print('BLOCKED after', children, type(exc).__name__)
"""

THREAD_BOMB = """
import threading
release = threading.Event()
started = 0
try:
    while started < 400:
        threading.Thread(target=release.wait, args=(20,), daemon=True).start()
        started += 1
    print('ESCAPED started', started)
except RuntimeError as exc:
    print('BLOCKED after', started, exc)
finally:
    release.set()
"""

# The same code for every backend, restricted included (no import): 16 MiB strings up to 512 MiB.
MEMORY_BOMB = """
chunks = []
for i in range(32):
    chunks.append(str(i % 10) * (16 << 20))
print('ESCAPED held', 16 * len(chunks), 'MiB')
"""

DISK_FILL = """
import os
written = 0
try:
    with open({path!r}, 'wb') as handle:
        for _ in range(48):
            handle.write(b'x' * (1 << 20))
            handle.flush()
            written += 1
    print('ESCAPED wrote', written, 'MiB')
except OSError as exc:
    print('BLOCKED after', written, 'MiB', exc.strerror)
finally:
    if os.path.exists({path!r}):
        os.remove({path!r})
"""

OUTPUT_FLOOD = """
import sys
line = 'y' * (1 << 20) + '\\n'
for _ in range(8):
    sys.{stream}.write(line)
print('ESCAPED flood finished')
"""

NO_NEWLINE_FLOOD = """
import os
for _ in range(8):
    os.write(1, b'\\xff\\xfe' * (1 << 19))
print('ESCAPED flood finished')
"""

# Spins for 5 s of wall time: far past the 1 s exec timeout (a loaded host may be late to
# kill), short enough for its weakened run. The stubborn one outlasts jupyter's 2 s grace too.
CPU_SPIN = """
import datetime
end = datetime.datetime.now() + datetime.timedelta(seconds=5)
while datetime.datetime.now() < end:
    pass
print('ESCAPED spun to the end')
"""

STUBBORN_SPIN = """
import signal, time
for name in ('SIGINT', 'SIGTERM', 'SIGHUP'):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
end = time.monotonic() + 8
while time.monotonic() < end:
    pass
print('ESCAPED spun to the end')
"""

FD_EXHAUSTION = """
import os
held = []
try:
    while len(held) < 100000:
        held.append(os.open('/dev/null', os.O_RDONLY))
except OSError as exc:
    print('EXHAUSTED after', len(held), exc.strerror, flush=True)
"""


def _flood(name: str, code: str) -> Attack:
    return Attack(
        name,
        R,
        ISOLATING,
        code,
        reason_in(ExitReason.OUTPUT_LIMIT, absent="ESCAPED"),
        PLAIN,
        printed("ESCAPED flood finished"),
    )


def _spin(name: str, code: str, claimed: tuple[str, ...]) -> Attack:
    timed_out = reason_in(ExitReason.TIMEOUT, absent="ESCAPED")
    shown = printed("ESCAPED spun to the end")
    return Attack(name, R, claimed, code, timed_out, PLAIN, shown, timeout_s=1)


RESOURCE_ATTACKS = [
    Attack(
        "fork bomb (400 processes)",
        R,
        ISOLATING,
        FORK_BOMB,
        reason_in(ExitReason.OK, present="BLOCKED", absent="ESCAPED"),
        LIMITS,
        printed("ESCAPED forked 400"),
        # the leftovers are gone: the sandbox's init and the helper (or kernel) remain
        after=("import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))", "2\n"),
    ),
    Attack(
        "thread bomb (400 threads)",
        R,
        ISOLATING,
        THREAD_BOMB,
        reason_in(ExitReason.OK, present="BLOCKED", absent="ESCAPED"),
        LIMITS,
        printed("ESCAPED started 400"),
    ),
    Attack(
        "memory bomb (512 MiB held)",
        R,
        ALL_BACKENDS,
        MEMORY_BOMB,
        reason_in(ExitReason.OOM, absent="ESCAPED"),
        LIMITS,
        printed("ESCAPED held 512 MiB"),
        fresh=True,  # restricted's session would go on holding what it got
    ),
    Attack(
        "disk fill of the workspace (48 MiB)",
        R,
        ("docker", "local"),
        DISK_FILL.replace("{path!r}", "'/workspace/fill.bin'"),
        reason_in(ExitReason.OK, present="BLOCKED", absent="ESCAPED"),
        LIMITS,
        printed("ESCAPED wrote 48 MiB"),
    ),
    Attack(
        "disk fill of /tmp (48 MiB)",
        R,
        ISOLATING,
        DISK_FILL.replace("{path!r}", "'/tmp/fill.bin'"),
        reason_in(ExitReason.OK, present="BLOCKED", absent="ESCAPED"),
        LIMITS,
        printed("ESCAPED wrote 48 MiB"),
    ),
    _flood("output flood on stdout (8 MiB)", OUTPUT_FLOOD.replace("{stream}", "stdout")),
    _flood("output flood on stderr (8 MiB)", OUTPUT_FLOOD.replace("{stream}", "stderr")),
    _flood("output flood of non-UTF-8 bytes, no newline", NO_NEWLINE_FLOOD),
    _spin("CPU spin past the timeout", CPU_SPIN, ALL_BACKENDS),
    _spin("CPU spin ignoring SIGINT/SIGTERM", STUBBORN_SPIN, ISOLATING),
    Attack(
        "file-descriptor exhaustion",
        R,
        ISOLATING,
        FD_EXHAUSTION,
        reason_in(*ENDED),
        PLAIN,
        printed("EXHAUSTED after"),
    ),
]
