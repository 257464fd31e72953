"""Bad input through the Python API (``python -c``), on the local (bubblewrap) backend where a
sandbox is needed: refused arguments, and scripts that end oddly or exhaust what they are given.
A failure the script causes is data (an ``ExecResult``), never an exception."""

from __future__ import annotations

import os
import sys
import time

from tests.badinputs.harness import API_WRAPPER, Case, Context, either

# What an API case may use without importing it.
_API_HEAD = (
    "import asyncio\nfrom pathlib import Path\nfrom execloop import run_script\n"
    "from execloop.runtime.task import Task\nLOCAL = {'backend': 'local'}\n"
)
_RUN = """
from execloop import SandboxSpec, run_script
r = run_script({script!r}, spec=SandboxSpec(backend="local", timeout_s=60{extra}))
print("reason", r.result.exit_reason.value, "code", r.result.exit_code)
print("stdout", repr(r.result.stdout[-300:]))
print("stderr", repr(r.result.stderr[-300:]))
print("ended", r.ended)
"""
_SESSION = """
import anyio
from execloop import SandboxSpec, create_sandbox
async def main():
    async with create_sandbox(SandboxSpec(backend="local")) as sandbox:
        try:
            {call}
        finally:
            after = await sandbox.exec("print('still serving')")
            print(after.exit_reason.value, after.stdout.strip())
anyio.run(main)
"""


def _script(script: str, extra: str = "") -> str:
    return _RUN.format(script=script, extra=extra)


def _session(call: str) -> str:
    return _SESSION.format(call=call)


FD_BOMB = (
    "fds = []\ntry:\n    while True:\n        fds.append(open('/dev/null'))\n"
    "except OSError as exc:\n    print('exhausted', len(fds) > 100, exc.errno, flush=True)\n"
)
MEMORY_THREADS = (  # threads left behind, allocating until the address space is gone
    "import threading\n"
    "def eat():\n    hog = []\n    while True:\n        hog.append(bytearray(16 * 1024 * 1024))\n"
    "for _ in range(4):\n    threading.Thread(target=eat, daemon=True).start()\n"
    "print('left threads', flush=True)\n"
)
THREADS_64 = (
    "import threading\nbarrier = threading.Barrier(65)\n"
    "threads = [threading.Thread(target=barrier.wait) for _ in range(64)]\n"
    "for t in threads: t.start()\nbarrier.wait()\nfor t in threads: t.join()\n"
    "print('64 threads ran', flush=True)\n"
)
BYE_EXIT_3 = "print('bye', flush=True)\nimport os\nos._exit(3)\n"
SLEEPER = "import time\nopen('started', 'w').close()\ntime.sleep(300)\n"


def _leaky(ctx: Context) -> None:
    ctx.file("d/ok.txt", "fine")
    os.symlink(ctx.secret, ctx.root / "d" / "x")


def _killed_local_run(ctx: Context) -> tuple[int, str, str]:
    """SIGKILL a Python process whose local sandbox is running: its janitor cleans up."""
    workspace = ctx.root / "ws"
    workspace.mkdir()
    if os.geteuid() == 0:
        os.chown(workspace, 1000, 1000)
    code = _script(SLEEPER, f", workspace_dir={str(workspace)!r}")
    process = ctx.spawn([sys.executable, "-c", API_WRAPPER, code])
    deadline = time.monotonic() + 60
    while not (workspace / "started").exists() and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    process.kill()
    stdout, stderr = process.communicate()
    return process.returncode, stdout, stderr


API_CASES: list[Case] = [
    Case(
        "api Budget(max_attempts=0)",
        2,
        ("ValidationError", "max_attempts"),
        api="from execloop.runtime.task import Budget\nBudget(max_attempts=0)",
    ),
    Case(
        "api Budget(max_wall_time_s=nan)",
        2,
        ("ValidationError", "finite"),
        api="from execloop.runtime.task import Budget\nBudget(max_wall_time_s=float('nan'))",
    ),
    Case(
        "api Task(goal='')",
        2,
        ("ValidationError", "must not be empty"),
        api="from execloop.runtime.task import Task\nTask(goal='')",
    ),
    Case(
        "api Task with two inputs of one name",
        2,
        ("x.csv",),
        api=lambda ctx: (
            _API_HEAD
            + f"Task(goal='g', inputs=(Path({ctx.file('a/x.csv', '1')!r}), "
            + f"Path({ctx.file('b/x.csv', '2')!r})))"
        ),
    ),
    Case(
        "api run_script(spec={typo})",
        2,
        ("ConfigError", "memroy"),
        api="from execloop import run_script\nrun_script('print(1)', spec={'memroy': '1g'})",
    ),
    Case(
        "api run_script(source=42)",
        2,
        ("ConfigError", "source must be code (str or bytes), not int"),
        api="from execloop import run_script\nrun_script(42)",
    ),
    Case(
        "api run_script(files={x: 42})",
        2,
        ("ConfigError", "files['x'] must be bytes or str, not int"),
        api=_API_HEAD + "run_script('print(1)', files={'x': 42}, spec=LOCAL)",
    ),
    Case(
        "api run_script inside an event loop",
        2,
        ("ConfigError", "use run_script_async"),
        api=_API_HEAD + "async def main():\n    run_script('print(1)')\nasyncio.run(main())",
    ),
    Case(
        "api run_script input dir with a link out",
        2,
        ("ConfigError", "is a symbolic link to", "outside"),
        api=lambda ctx: (
            _API_HEAD + f"run_script('print(1)', spec=LOCAL, inputs=[Path({ctx.path('d')!r})])"
        ),
        setup=_leaky,
    ),
    Case(
        "api run_script a fifo path",
        2,
        ("ConfigError", "is a fifo"),
        api=lambda ctx: _API_HEAD + f"run_script(Path({ctx.path('fifo')!r}), spec=LOCAL)",
        setup=lambda ctx: os.mkfifo(ctx.root / "fifo"),
        timeout_s=60,
    ),
    Case(
        "api exec(timeout=-1) is refused, the session serves on",
        2,
        ("ConfigError: timeout must be a positive, finite number", "ok still serving"),
        api=_session("await sandbox.exec('print(1)', timeout=-1)"),
    ),
    Case(
        "api exec(timeout=nan)",
        2,
        ("ConfigError: timeout must be a positive, finite number", "ok still serving"),
        api=_session("await sandbox.exec('print(1)', timeout=float('nan'))"),
    ),
    Case(
        "api upload a NUL in a name",
        2,
        ("ConfigError", "contains a NUL byte", "ok still serving"),
        api=_session("await sandbox.upload({'a\\x00b': 'x'})"),
    ),
    Case(
        "api upload({'x': 42})",
        2,
        ("ConfigError", "must be bytes or str, not int", "ok still serving"),
        api=_session("await sandbox.upload({'x': 42})"),
    ),
    Case(
        "api upload a name out of the workspace",
        2,
        ("TransferError", "'..' components are refused", "ok still serving"),
        api=_session("await sandbox.upload({'../../etc/x': 'x'})"),
    ),
    Case(
        "local: print then os._exit(3)",
        0,
        ("reason error code 3", "stdout 'bye\\n'", "called os._exit(3)"),
        api=_script(BYE_EXIT_3),
    ),
    Case(
        "local: sys.exit(256) is status 0, as in Python",
        0,
        ("reason ok code 0",),
        api=_script("import sys\nsys.exit(256)\n"),
    ),
    Case(
        "local: sys.exit('message') is status 1",
        0,
        ("reason error code 1", "message"),
        api=_script("import sys\nsys.exit('message')\n"),
    ),
    Case(
        "local: the script exhausts file descriptors",
        0,
        ("reason error", "exhausted True 24", "used up the file descriptors"),
        api=_script(FD_BOMB),
    ),
    Case(
        "local: threads left exhausting memory",
        0,
        (),
        api=_script(MEMORY_THREADS),
        # The threads race the reply: the script's end, or the OOM killer first (said clearly).
        verify=either(("reason ok code 0", "left threads"), ("reason oom", "killed (oom)")),
    ),
    Case(
        "local: 64 threads with the default limits",
        0,
        ("reason ok code 0", "64 threads ran"),
        api=_script(THREADS_64),
    ),
    Case(
        "local: a 2 GiB input over workspace_size",
        2,
        ("ConfigError", "the inputs total 2.1 GB", "workspace_size"),
        api=lambda ctx: (
            _API_HEAD
            + f"run_script('print(1)', spec=LOCAL, inputs=[Path({ctx.path('big.bin')!r})])"
        ),
        setup=lambda ctx: os.truncate(ctx.file("big.bin"), 2 * 1024**3),
    ),
    Case(
        "local: SIGKILL of the owner mid-run leaves nothing",
        -9,
        (),
        drive=_killed_local_run,
        writable=("ws",),
    ),
]
