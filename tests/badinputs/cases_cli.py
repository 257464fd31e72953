"""Bad input refused before any sandbox starts: flags, goals, checks, scripts, inputs,
workspaces, skills, databases. Every case runs the real ``execloop`` in a subprocess."""

from __future__ import annotations

import os
import sqlite3

from tests.badinputs.harness import Case, Command, Context

PROBE = (
    "import os\nfor n in sorted(os.listdir('.')):\n"
    "    print(n, open(n).read() if os.path.isfile(n) else '')\n"
)
SKILL = """---
name: {name}
description: Writes result.json.
version: 1.0.0
inputs:
  type: object
---
# {name}

Write result.json.
"""


def _replies(ctx: Context) -> str:
    return "scripted:" + ctx.file("replies.yaml", '- "print(1)"\n')


def _task(*extra: str, goal: str = "make result.json") -> Command:
    return lambda ctx: ["task", goal, "--model", _replies(ctx), *extra]


def _probe(ctx: Context) -> str:
    return ctx.file("probe.py", PROBE)


def _run(*extra: str) -> Command:
    return lambda ctx: ["run", _probe(ctx), *extra]


def _leaky_dir(ctx: Context) -> None:
    ctx.file("d/ok.txt", "fine")
    os.symlink(ctx.secret, ctx.root / "d" / "x")


def _nested_leak(ctx: Context) -> None:
    ctx.file("d/sub/ok.txt", "fine")
    os.symlink("../../host", ctx.root / "d" / "sub" / "up")


def _fifo(ctx: Context) -> None:
    os.mkfifo(ctx.root / "fifo")


def _sparse(ctx: Context) -> None:
    with (ctx.root / "big.bin").open("wb") as handle:  # 2 GiB by size, nothing on disk
        handle.truncate(2 * 1024**3)


def _workspace(ctx: Context, **files: str) -> None:
    ws = ctx.root / "ws"
    ws.mkdir()
    for name, text in files.items():
        ctx.file(f"ws/{name}", text)
    if os.geteuid() == 0:  # the sandbox runs as the workspace's owner, never root
        os.chown(ws, 1000, 1000)


def _same_named_input(ctx: Context) -> None:
    _workspace(ctx, **{"data.csv": "1,2\n"})
    ctx.file("data.csv", "3,4\n")


def _two_same_names(ctx: Context) -> list[str]:
    one, two = ctx.file("a/x.csv", "1\n"), ctx.file("b/x.csv", "2\n")
    return _task("--input", one, "--input", two)(ctx)


def _skills(ctx: Context, **files: bytes | str) -> str:
    for name, data in files.items():
        ctx.file(f"skills/{name}/SKILL.md", data)
    return ctx.path("skills")


def _db(ctx: Context, name: str) -> str:
    from execloop.runtime.store import TaskStore

    path = ctx.root / name
    TaskStore(path).close()
    return str(path)


def _read_only_db(ctx: Context) -> None:
    path = _db(ctx, "archive/runs.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    for leftover in ("runs.db-wal", "runs.db-shm"):
        (ctx.root / "archive" / leftover).unlink(missing_ok=True)
    os.chmod(path, 0o444)
    os.chmod(ctx.root / "archive", 0o555)


CLI_CASES: list[Case] = [
    # -- task: budgets, goals, checks, models, skills ----------------------------------------
    Case(
        "task --max-attempts 0",
        2,
        ("--max-attempts: must be at least 1",),
        cli=_task("--max-attempts", "0"),
    ),
    Case(
        "task --max-attempts -1",
        2,
        ("--max-attempts: must be at least 1",),
        cli=_task("--max-attempts", "-1"),
    ),
    Case(
        "task --max-attempts text",
        2,
        ("'--max-attempts'", "is not a valid integer"),
        cli=_task("--max-attempts", "x"),
    ),
    Case(
        "task --max-tokens 0",
        2,
        ("--max-tokens: must be at least 1",),
        cli=_task("--max-tokens", "0"),
    ),
    Case(
        "task --max-time nan",
        2,
        ("--max-time: must be a finite number",),
        cli=_task("--max-time", "nan"),
    ),
    Case(
        "task --max-time inf",
        2,
        ("--max-time: must be a finite number",),
        cli=_task("--max-time", "inf"),
    ),
    Case(
        "task --max-time -5",
        2,
        ("--max-time: must be greater than 0",),
        cli=_task("--max-time", "-5"),
    ),
    Case("task empty goal", 2, ("GOAL: must not be empty",), cli=_task(goal="")),
    Case("task blank goal", 2, ("GOAL: must not be empty",), cli=_task(goal=" \t\n")),
    Case("task two inputs, one name", 2, ("--input:", "x.csv"), cli=_two_same_names),
    Case(
        "task --check 'result['",
        2,
        ("--check: check expression 'result[' does not compile",),
        cli=_task("--check", "result["),
    ),
    Case(
        "task --check import",
        2,
        ("--check:", "__import__"),
        cli=_task("--check", '__import__("os").system("id")'),
    ),
    Case(
        "task --check blank", 2, ("--check: an expression check needs",), cli=_task("--check", " ")
    ),
    Case(
        "task --model bad spec",
        2,
        ("--model: bad model spec 'gpt'", "scripted:FILE"),
        cli=lambda ctx: ["task", "g", "--model", "gpt"],
    ),
    Case(
        "task scripted file missing",
        2,
        ("--model: scripted replies file", "none.yaml"),
        cli=lambda ctx: ["task", "g", "--model", f"scripted:{ctx.root}/none.yaml"],
    ),
    Case(
        "task scripted file binary",
        2,
        ("--model: scripted replies file",),
        cli=lambda ctx: ["task", "g", "--model", "scripted:" + ctx.file("r.yaml", b"\xff\xfe\x00")],
    ),
    Case(
        "task --skill unknown",
        2,
        ("--skill: unknown skill 'nope'; available:",),
        cli=_task("--skill", "nope"),
    ),
    Case(
        "task --input symlink to a host file",
        2,
        ("--input:", "is a symbolic link to", "outside"),
        cli=lambda ctx: _task("--input", ctx.path("d"))(ctx),
        setup=_leaky_dir,
    ),
    Case(
        "task --input fifo",
        2,
        ("--input:", "is a fifo; only regular files and directories"),
        cli=lambda ctx: _task("--input", ctx.path("fifo"))(ctx),
        setup=_fifo,
    ),
    Case(
        "task --input missing",
        2,
        ("'--input'", "does not exist"),
        cli=_task("--input", "/nonexistent/in.csv"),
    ),
    Case(
        "task skill without its inputs",
        2,
        ("skill 'data-clean' needs the input(s) data, schema", "error after 0 attempt(s)"),
        cli=_task("--skill", "data-clean"),
    ),
    Case(
        "task task.json breaks the skill schema",
        2,
        ("data: 'x.txt' does not match",),
        cli=lambda ctx: _task(
            "--skill", "data-clean", "--input", ctx.file("task.json", '{"data": "x.txt"}')
        )(ctx),
    ),
    Case(
        "task task.json not UTF-8",
        2,
        ("task.json: not UTF-8 text",),
        cli=lambda ctx: _task(
            "--skill", "data-clean", "--input", ctx.file("task.json", b'{"data": "\xff"}')
        )(ctx),
    ),
    Case(
        "task task.json not an object",
        2,
        ("task.json: must be a JSON object, got list",),
        cli=lambda ctx: _task("--skill", "data-clean", "--input", ctx.file("task.json", "[1]"))(
            ctx
        ),
    ),
    # -- wrong names ---------------------------------------------------------------------------
    Case(
        "misspelt flag --timeout-s",
        2,
        ("No such option '--timeout-s'", "Did you mean '--timeout'"),
        cli=_run("--timeout-s", "5"),
    ),
    Case(
        "misspelt flag --max-attempt",
        2,
        ("No such option '--max-attempt'", "Did you mean one of: '--max-attempts'"),
        cli=_task("--max-attempt", "3"),
    ),
    Case("unknown command", 2, ("No such command 'tsak'",), cli=lambda ctx: ["tsak"]),
    # -- run: scripts that are not files, limits ----------------------------------------------
    Case(
        "run a fifo as the script",
        2,
        ("the script", "is a fifo; give a Python file to run"),
        cli=lambda ctx: ["run", ctx.path("fifo")],
        setup=_fifo,
        timeout_s=60,
    ),
    Case(
        "run /dev/zero as the script",
        2,
        ("the script /dev/zero is a character device",),
        cli=lambda ctx: ["run", "/dev/zero"],
        timeout_s=60,
    ),
    Case(
        "run a missing script",
        2,
        ("'SCRIPT'", "does not exist"),
        cli=lambda ctx: ["run", ctx.path("nope.py")],
    ),
    Case(
        "run a directory",
        2,
        ("'SCRIPT'", "is a directory"),
        cli=lambda ctx: ["run", ctx.path("host")],
    ),
    Case(
        "run --timeout -1", 2, ("--timeout: must be greater than 0",), cli=_run("--timeout", "-1")
    ),
    Case(
        "run --timeout nan",
        2,
        ("--timeout: must be a finite number (got nan)",),
        cli=_run("--timeout", "nan"),
    ),
    Case(
        "run --cpus nan",
        2,
        ("--cpus: must be a finite number (got nan)",),
        cli=_run("--cpus", "nan"),
    ),
    Case(
        "report --out is a file",
        2,
        ("--out", "notes.txt"),
        cli=lambda ctx: [
            "report",
            "x",
            "--db",
            _db(ctx, "runs.db"),
            "--out",
            ctx.path("host/notes.txt"),
        ],
    ),
    Case("run --memory lots", 2, ("--memory: expected a size",), cli=_run("--memory", "lots")),
    Case("run --pids 1", 2, ("--pids: must be at least 16 (got 1)",), cli=_run("--pids", "1")),
    Case("run --cpus 0", 2, ("--cpus:",), cli=_run("--cpus", "0")),
    # -- run: inputs ---------------------------------------------------------------------------
    Case(
        "run --input dir with a link to a host file",
        2,
        ("d/x is a symbolic link to", "secret.txt", "outside"),
        cli=lambda ctx: _run("--input", ctx.path("d"))(ctx),
        setup=_leaky_dir,
    ),
    Case(
        "run --input dir with a link up and out",
        2,
        ("d/sub/up is a symbolic link to", "outside"),
        cli=lambda ctx: _run("--input", ctx.path("d"))(ctx),
        setup=_nested_leak,
    ),
    Case(
        "run --input fifo",
        2,
        ("is a fifo; only regular files and directories can be inputs",),
        cli=lambda ctx: _run("--input", ctx.path("fifo"))(ctx),
        setup=_fifo,
        timeout_s=60,
    ),
    Case(
        "run --input /dev/zero",
        2,
        ("/dev/zero is a character device; only regular files",),
        cli=_run("--input", "/dev/zero"),
        timeout_s=60,
    ),
    Case(
        "run --input 2 GiB over workspace_size",
        2,
        ("the inputs total 2.1 GB", "--workspace DIR"),
        cli=lambda ctx: _run("--input", ctx.path("big.bin"))(ctx),
        setup=_sparse,
    ),
    Case(
        "run --input named main.py",
        2,
        ("would land as main.py, the name execloop reserves for the script",),
        cli=lambda ctx: _run("--input", ctx.file("in/main.py", "x = 1\n"))(ctx),
    ),
    Case(
        "run two inputs, one name",
        2,
        ("x.csv",),
        cli=lambda ctx: _run(
            "--input", ctx.file("a/x.csv", "1"), "--input", ctx.file("b/x.csv", "2")
        )(ctx),
    ),
    # -- run: workspaces -----------------------------------------------------------------------
    Case(
        "run --workspace with the user's main.py",
        2,
        ("main.py exists; execloop will not overwrite it",),
        cli=lambda ctx: _run("--workspace", ctx.path("ws"))(ctx),
        setup=lambda ctx: _workspace(ctx, **{"main.py": "# mine\n"}),
        writable=("ws",),
        keep=("ws/main.py",),
    ),
    Case(
        "run --workspace with a same-named input",
        2,
        ("data.csv exists; execloop will not overwrite it",),
        cli=lambda ctx: _run("--workspace", ctx.path("ws"), "--input", ctx.path("data.csv"))(ctx),
        setup=_same_named_input,
        writable=("ws",),
        keep=("ws/data.csv",),
    ),
    Case(
        "run --workspace /etc",
        2,
        ("workspace /etc is a system directory", "use a directory of your own"),
        never=("chown",),
        cli=_run("--workspace", "/etc"),
    ),
    Case(
        "run --workspace /",
        2,
        ("workspace / is a system directory",),
        never=("chown",),
        cli=_run("--workspace", "/"),
    ),
    Case(
        "run --workspace is a file",
        2,
        ("'--workspace'", "notes.txt' is a file"),
        cli=lambda ctx: _run("--workspace", ctx.path("host/notes.txt"))(ctx),
    ),
    # -- skills --------------------------------------------------------------------------------
    Case(
        "skills list --dir with one broken skill",
        1,
        ("good", "data-clean", "broken skill:", "bad/SKILL.md: invalid"),
        cli=lambda ctx: [
            "skills",
            "list",
            "--dir",
            _skills(ctx, good=SKILL.format(name="good"), bad="---\nname: bad\n---\n"),
        ],
    ),
    Case(
        "skills show a binary SKILL.md",
        2,
        ("bin/SKILL.md: not UTF-8 text (byte 0x89 at offset 0)",),
        cli=lambda ctx: [
            "skills",
            "show",
            "bin",
            "--dir",
            _skills(ctx, bin=b"\x89PNG\r\n\x1a\n\x00"),
        ],
    ),
    Case(
        "skills show unknown",
        2,
        ("unknown skill 'nope'; available:",),
        cli=lambda ctx: ["skills", "show", "nope"],
    ),
    Case(
        "skills validate a broken file",
        1,
        ("SKILL.md", "description"),
        cli=lambda ctx: [
            "skills",
            "validate",
            ctx.file("skills/bad/SKILL.md", "---\nname: bad\n---\n"),
        ],
    ),
    # -- databases and output folders ----------------------------------------------------------
    Case(
        "runs --db that does not exist",
        2,
        ("typo.db",),
        cli=lambda ctx: ["runs", "--db", ctx.path("typo.db")],
        verify=lambda ctx, _: ["created typo.db"] if (ctx.root / "typo.db").exists() else [],
    ),
    Case(
        "runs --db corrupt",
        2,
        ("junk.db",),
        cli=lambda ctx: ["runs", "--db", ctx.file("junk.db", b"not a database at all" * 100)],
    ),
    Case(
        "runs --db read-only archive",
        0,
        (),
        cli=lambda ctx: ["runs", "--db", ctx.path("archive/runs.db")],
        setup=_read_only_db,
    ),
    Case(
        "report unknown run",
        2,
        ("nope",),
        cli=lambda ctx: ["report", "nope", "--db", _db(ctx, "runs.db"), "--out", ctx.path("rep")],
        writable=("rep",),
    ),
    Case(
        "demo --out is a file",
        2,
        ("--out", "notes.txt"),
        cli=lambda ctx: ["demo", "--out", ctx.path("host/notes.txt")],
    ),
    Case(
        "kernels install --prefix missing",
        2,
        ("--prefix:", "is not an existing directory"),
        cli=lambda ctx: ["kernels", "install", "--prefix", ctx.path("nonexistent")],
    ),
    Case(
        "kernels install --prefix a file",
        2,
        ("--prefix:", "is not an existing directory"),
        cli=lambda ctx: ["kernels", "install", "--prefix", ctx.path("host/notes.txt")],
    ),
]
