"""Bad input that reaches a Docker sandbox: scripts that end oddly, exhaust what they are given
or flood the output; shared workspaces and output folders; owners killed with SIGKILL."""

from __future__ import annotations

import os
import pty
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from typing import Any

from execloop.runtime.demo import demo_tasks
from tests.badinputs.cases_api import BYE_EXIT_3, FD_BOMB, MEMORY_THREADS, SLEEPER
from tests.badinputs.harness import CLI, Case, Context, containers_of, either, leftovers

ESCAPES = "import sys\nsys.stdout.write('A\\x1b]0;pwned\\x07B\\x1b[2JC\\x9bD\\rE\\tF\\n')\n"
MANY_FILES = (
    "import os\nos.mkdir('many')\nfor i in range(100_000):\n"
    "    open(f'many/f{i:06}', 'w').close()\nopen('many/z-last', 'w').write('x' * 2000)\n"
)
WAIT_FOR_GO = (
    "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.05)\n"
    "print('first ran; main.py is mine:', open('main.py').read().startswith('import os'))\n"
)
DEMO_TASKS = len(demo_tasks())  # `execloop demo`: the tool tasks and the skills' examples


def _script(text: str | bytes, name: str = "s.py") -> object:
    return lambda ctx: ["run", ctx.file(name, text)]


def _files(ctx: Context, files: dict[str, str]) -> None:
    for name, text in files.items():
        ctx.file(name, text)


def _workspace(ctx: Context) -> str:
    ws = ctx.root / "ws"
    ws.mkdir(exist_ok=True)
    if os.geteuid() == 0:  # the sandbox runs as the workspace's owner, never root
        os.chown(ws, 1000, 1000)
    return str(ws)


def _on_a_terminal(ctx: Context) -> tuple[int, str, str]:
    """``execloop run`` with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    script = ctx.path("escapes.py")
    process = subprocess.Popen(
        [*CLI, "run", script],
        cwd=ctx.root / "cwd",
        env=ctx.env(),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    ctx.pids.append(process.pid)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    status = process.wait(timeout=ctx.timeout_s)
    return status, b"".join(chunks).decode(errors="replace"), ""


def _shared_workspace(ctx: Context) -> tuple[int, str, str]:
    """A second run on a workspace the first one holds is refused; the first runs its own."""
    ws = _workspace(ctx)
    first = ctx.spawn([*CLI, "run", ctx.path("first.py"), "--workspace", ws])
    deadline = time.monotonic() + 120
    while not (ctx.root / "ws" / "main.py").exists() and first.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    second = ctx.execloop("run", ctx.path("second.py"), "--workspace", ws)
    (ctx.root / "ws" / "go").write_text("")
    status, stdout, stderr = ctx.finish(first)
    return second[0] or status, stdout + second[1], stderr + second[2]


def _killed_run(ctx: Context, *, janitor_too: bool) -> tuple[int, str, str]:
    """SIGKILL ``execloop run`` while its container runs (and, with ``janitor_too``, its
    janitor first: then ``execloop reap`` is what must clean up)."""
    import psutil

    from execloop.sandboxes.docker_backend import default_client

    docker = default_client()
    run = ctx.spawn([*CLI, "run", ctx.path("sleeper.py"), "--timeout", "300"])
    deadline = time.monotonic() + 120
    while not containers_of(ctx, docker) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if janitor_too:  # the janitor is the run's child, in a session of its own
        for child in psutil.Process(run.pid).children():
            if any(arg.endswith("janitor.py") for arg in child.cmdline()):
                child.kill()
    run.send_signal(signal.SIGKILL)
    run.communicate()
    if not janitor_too:
        return 0, "", ""
    return ctx.execloop("reap")


def _two_demos(ctx: Context) -> tuple[int, str, str]:
    demos = [ctx.spawn([*CLI, "demo", "--out", ctx.path("d")]) for _ in range(2)]
    done = [ctx.finish(demo) for demo in demos]
    return max(d[0] for d in done), "".join(d[1] for d in done), "".join(d[2] for d in done)


def _all_passed(*, tasks: int, launched_once: bool) -> Callable[[Context, str], list[str]]:
    """Every task of the demo database has one result, passed (and, with ``launched_once``,
    was launched by one broker only: none was run by both)."""

    def verify(ctx: Context, output: str) -> list[str]:
        from execloop.runtime.store import TaskStore
        from execloop.runtime.task import TaskStatus

        store = TaskStore(ctx.root / "d" / "execloop.db", read_only=True)
        try:
            rows = store.tasks()
            results = [store.result(row.id) for row in rows]
        finally:
            store.close()
        problems = [] if len(rows) == tasks else [f"{len(rows)} tasks, expected {tasks}"]
        problems += [
            f"task {row.id}: {r.status if r else 'no result'} {r.error if r else ''}"
            for row, r in zip(rows, results, strict=True)
            if r is None or r.status is not TaskStatus.PASSED
        ]
        if launched_once:
            problems += [
                f"task {row.id} launched {row.launches}x" for row in rows if row.launches != 1
            ]
        return problems

    return verify


def _killed_demo_rerun(ctx: Context) -> tuple[int, str, str]:
    db = ctx.root / "d" / "execloop.db"
    first = ctx.spawn([*CLI, "demo", "--out", ctx.path("d")])
    running, deadline = 0, time.monotonic() + 300
    while not running and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    query = "SELECT COUNT(*) FROM tasks WHERE state = 'running'"
                    running = conn.execute(query).fetchone()[0]
            except sqlite3.Error:  # just created: no tables yet
                continue
    first.send_signal(signal.SIGKILL)
    first.communicate()
    leftovers(ctx, None)  # let the killed demo's janitor finish
    return ctx.execloop("demo", "--out", ctx.path("d"))


def _docker(*args: Any, **fields: Any) -> Case:
    return Case(*args, docker=True, **fields)


DOCKER_CASES: list[Case] = [
    _docker(
        "docker: print then os._exit(3)",
        3,
        ("error s.py: exit 3", "bye", "the script called os._exit(3)"),
        never=("killed",),
        cli=_script(BYE_EXIT_3),
    ),
    _docker(
        "docker: sys.exit(256) is status 0, as in Python",
        0,
        ("ok s.py: exit 0",),
        cli=_script("import sys\nsys.exit(256)\n"),
    ),
    _docker(
        "docker: non-UTF-8 script",
        1,
        ("error s.py: exit 1", "SyntaxError", "utf-8"),
        cli=_script(b"print('caf\xe9')\n"),
    ),
    _docker(
        "docker: latin-1 script with a PEP 263 cookie",
        0,
        ("ok s.py: exit 0", "caf\u00e9"),
        cli=_script(b"# -*- coding: latin-1 -*-\nprint('caf\xe9')\n"),
    ),
    _docker(
        "docker: the script exhausts file descriptors",
        1,
        ("exit 1", "exhausted True 24", "used up the file descriptors"),
        cli=_script(FD_BOMB),
    ),
    _docker(
        "docker: threads left exhausting memory",
        (0, 137),
        (),
        cli=_script(MEMORY_THREADS),
        # The threads race the reply: the script's end, or the OOM killer first (said clearly).
        verify=either(("ok s.py: exit 0", "left threads"), ("the sandbox was killed (oom)",)),
    ),
    _docker(
        "docker: --image that does not exist",
        2,
        ("image not found", "nope-not-built:latest", "execloop images build"),
        cli=lambda ctx: ["run", ctx.file("s.py", "print(1)\n"), "--image", "nope-not-built:latest"],
    ),
    _docker(
        "docker: a script past --timeout",
        124,
        ("timeout s.py", "the sandbox was killed (timeout)"),
        cli=lambda ctx: [
            "run",
            ctx.file("s.py", "import time\ntime.sleep(60)\n"),
            "--timeout",
            "1",
        ],
    ),
    _docker(
        "docker: a forked child outliving --timeout",
        124,
        ("timeout s.py", "the sandbox was killed (timeout)"),
        cli=lambda ctx: [
            "run",
            ctx.file("s.py", "import os, time\nos.fork() or os._exit(0)\ntime.sleep(60)\n"),
            "--timeout",
            "2",
        ],
    ),
    _docker(
        "docker: a script past --memory",
        137,
        ("oom s.py", "the sandbox was killed (oom)"),
        cli=lambda ctx: [
            "run",
            ctx.file("s.py", "x = bytearray(600 * 1024 * 1024)\n"),
            "--memory",
            "256m",
        ],
    ),
    _docker(
        "docker: a script that SIGKILLs itself",
        137,
        ("killed s.py", "the sandbox was killed (killed)"),
        cli=_script("import os\nos.kill(os.getpid(), 9)\n"),
    ),
    _docker(
        "docker: endless output stops at the output limit",
        1,
        ("output_limit s.py", "stdout was truncated: shown live up to the output bound"),
        cli=_script("import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"),
    ),
    _docker(
        "docker: 100k output files, a bounded table",
        0,
        ("… and 99,952 more files, 2.0 kB",),
        cli=lambda ctx: ["run", ctx.file("many.py", MANY_FILES), "--timeout", "300"],
        slow=True,
        timeout_s=400,
        verify=lambda ctx, out: (
            []
            if sum("many/f" in line for line in out.splitlines()) == 49
            else ["table not capped at 50 rows"]
        ),
    ),
    _docker(
        "docker: terminal escapes in output, on a terminal",
        0,
        ("A\\x1b]0;pwned\\x07B\\x1b[2JC\\x9bD\\x0dE",),
        never=("\x1b]0;pwned", "\x1b[2J", "\x9b"),
        drive=_on_a_terminal,
        setup=lambda ctx: _files(ctx, {"escapes.py": ESCAPES}),
    ),
    _docker(
        "docker: a workspace run keeps outputs and removes main.py",
        0,
        ("ok s.py",),
        cli=lambda ctx: [
            "run",
            ctx.file("s.py", "open('out.txt', 'w').write('x')\n"),
            "--workspace",
            _workspace(ctx),
        ],
        writable=("ws",),
        verify=lambda ctx, _: (
            []
            if sorted(os.listdir(ctx.root / "ws")) == ["out.txt"]
            else [f"workspace holds {sorted(os.listdir(ctx.root / 'ws'))}"]
        ),
    ),
    _docker(
        "docker: two runs sharing a workspace",
        2,
        ("is in use by another execloop run", "first ran; main.py is mine: True"),
        drive=_shared_workspace,
        writable=("ws",),
        setup=lambda ctx: _files(
            ctx, {"first.py": WAIT_FOR_GO, "second.py": "print('second ran')\n"}
        ),
    ),
    _docker(
        "docker: SIGKILL'd run, janitor cleans up",
        0,
        (),
        drive=lambda ctx: _killed_run(ctx, janitor_too=False),
        setup=lambda ctx: _files(ctx, {"sleeper.py": SLEEPER}),
    ),
    _docker(
        "docker: SIGKILL'd run and janitor, then execloop reap",
        0,
        ("removed", "container(s)", "temporary directory(ies)"),
        drive=lambda ctx: _killed_run(ctx, janitor_too=True),
        setup=lambda ctx: _files(ctx, {"sleeper.py": SLEEPER}),
    ),
    _docker(
        "docker: two demos on one --out at once",
        0,
        ("passed",),
        never=("internal",),
        drive=_two_demos,
        writable=("d",),
        verify=_all_passed(tasks=2 * DEMO_TASKS, launched_once=True),
        slow=True,
        timeout_s=600,
    ),
    _docker(
        "docker: SIGKILL of a demo, re-run on the same --out",
        0,
        ("resuming", "unfinished task(s) of an earlier run", "resumed from an earlier run"),
        never=("internal",),
        drive=_killed_demo_rerun,
        writable=("d",),
        verify=_all_passed(tasks=2 * DEMO_TASKS, launched_once=False),
        slow=True,
        timeout_s=600,
    ),
]
