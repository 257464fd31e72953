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


def replies(ctx: Context) -> str:
    return "scripted:" + ctx.file("replies.yaml", '- "print(1)"\n')


def task(*extra: str, goal: str = "make result.json") -> Command:
    return lambda ctx: ["task", goal, "--model", replies(ctx), *extra]


def probe(ctx: Context) -> str:
    return ctx.file("probe.py", PROBE)


def run(*extra: str) -> Command:
    return lambda ctx: ["run", probe(ctx), *extra]


def leaky_dir(ctx: Context) -> None:
    ctx.file("d/ok.txt", "fine")
    os.symlink(ctx.secret, ctx.root / "d" / "x")


def nested_leak(ctx: Context) -> None:
    ctx.file("d/sub/ok.txt", "fine")
    os.symlink("../../host", ctx.root / "d" / "sub" / "up")


def fifo(ctx: Context) -> None:
    os.mkfifo(ctx.root / "fifo")


def sparse(ctx: Context) -> None:
    with (ctx.root / "big.bin").open("wb") as handle:  # 2 GiB by size, nothing on disk
        handle.truncate(2 * 1024**3)


def workspace(ctx: Context, **files: str) -> None:
    ws = ctx.root / "ws"
    ws.mkdir()
    for name, text in files.items():
        ctx.file(f"ws/{name}", text)
    if os.geteuid() == 0:  # the sandbox runs as the workspace's owner, never root
        os.chown(ws, 1000, 1000)


def same_named_input(ctx: Context) -> None:
    workspace(ctx, **{"data.csv": "1,2\n"})
    ctx.file("data.csv", "3,4\n")


def _two_same_names(ctx: Context) -> list[str]:
    one, two = ctx.file("a/x.csv", "1\n"), ctx.file("b/x.csv", "2\n")
    return task("--input", one, "--input", two)(ctx)


def skills(ctx: Context, **files: bytes | str) -> str:
    for name, data in files.items():
        ctx.file(f"skills/{name}/SKILL.md", data)
    return ctx.path("skills")


def db(ctx: Context, name: str) -> str:
    from execloop.runtime.store import TaskStore

    path = ctx.root / name
    TaskStore(path).close()
    return str(path)


def read_only_db(ctx: Context) -> None:
    path = db(ctx, "archive/runs.db")
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
        cli=task("--max-attempts", "0"),
    ),
    Case(
        "task --max-attempts -1",
        2,
        ("--max-attempts: must be at least 1",),
        cli=task("--max-attempts", "-1"),
    ),
    Case(
        "task --max-attempts text",
        2,
        ("'--max-attempts'", "is not a valid integer"),
        cli=task("--max-attempts", "x"),
    ),
    Case(
        "task --max-tokens 0",
        2,
        ("--max-tokens: must be at least 1",),
        cli=task("--max-tokens", "0"),
    ),
    Case(
        "task --max-time nan",
        2,
        ("--max-time: must be a finite number",),
        cli=task("--max-time", "nan"),
    ),
    Case(
        "task --max-time inf",
        2,
        ("--max-time: must be a finite number",),
        cli=task("--max-time", "inf"),
    ),
    Case(
        "task --max-time -5",
        2,
        ("--max-time: must be greater than 0",),
        cli=task("--max-time", "-5"),
    ),
    Case("task empty goal", 2, ("GOAL: must not be empty",), cli=task(goal="")),
    Case("task blank goal", 2, ("GOAL: must not be empty",), cli=task(goal=" \t\n")),
    Case("task two inputs, one name", 2, ("--input:", "x.csv"), cli=_two_same_names),
    Case(
        "task --check 'result['",
        2,
        ("--check: check expression 'result[' does not compile",),
        cli=task("--check", "result["),
    ),
    Case(
        "task --check import",
        2,
        ("--check:", "__import__"),
        cli=task("--check", '__import__("os").system("id")'),
    ),
    Case(
        "task --check blank", 2, ("--check: an expression check needs",), cli=task("--check", " ")
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
        cli=task("--skill", "nope"),
    ),
    Case(
        "task --input symlink to a host file",
        2,
        ("--input:", "is a symbolic link to", "outside"),
        cli=lambda ctx: task("--input", ctx.path("d"))(ctx),
        setup=leaky_dir,
    ),
    Case(
        "task --input fifo",
        2,
        ("--input:", "is a fifo; only regular files and directories"),
        cli=lambda ctx: task("--input", ctx.path("fifo"))(ctx),
        setup=fifo,
    ),
    Case(
        "task --input dir holding a fifo",
        2,
        ("--input:", "/p is a fifo; only regular files and directories can be inputs"),
        cli=lambda ctx: task("--input", ctx.path("dd"))(ctx),
        setup=lambda ctx: (ctx.file("dd/a.txt", "x"), os.mkfifo(ctx.root / "dd" / "p")),
        timeout_s=60,
    ),
    Case(
        "task --input missing",
        2,
        ("'--input'", "does not exist"),
        cli=task("--input", "/nonexistent/in.csv"),
    ),
    Case(
        "task skill without its inputs",
        2,
        ("skill 'data-clean' needs the input(s) data, schema", "error after 0 attempt(s)"),
        cli=task("--skill", "data-clean"),
        never=("│ 0 ",),  # no phantom "attempt 0" row in the live table
        one_line=False,  # ends as a Result (status error, no attempt), summarised
    ),
    Case(
        "task task.json breaks the skill schema",
        2,
        ("data: 'x.txt' does not match",),
        cli=lambda ctx: task(
            "--skill", "data-clean", "--input", ctx.file("task.json", '{"data": "x.txt"}')
        )(ctx),
        one_line=False,  # ends as a Result (status error, no attempt), summarised
    ),
    Case(
        "task task.json not UTF-8",
        2,
        ("task.json: not UTF-8 text",),
        cli=lambda ctx: task(
            "--skill", "data-clean", "--input", ctx.file("task.json", b'{"data": "\xff"}')
        )(ctx),
        one_line=False,  # ends as a Result (status error, no attempt), summarised
    ),
    Case(
        "task task.json not an object",
        2,
        ("task.json: must be a JSON object, got list",),
        cli=lambda ctx: task("--skill", "data-clean", "--input", ctx.file("task.json", "[1]"))(ctx),
        one_line=False,  # ends as a Result (status error, no attempt), summarised
    ),
    # -- wrong names ---------------------------------------------------------------------------
    Case(
        "misspelt flag --timeout-s",
        2,
        ("No such option '--timeout-s'", "Did you mean", "'--timeout'"),
        cli=run("--timeout-s", "5"),
    ),
    Case(
        "misspelt flag --max-attempt",
        2,
        ("No such option '--max-attempt'", "Did you mean one of: '--max-attempts'"),
        cli=task("--max-attempt", "3"),
    ),
    Case("unknown command", 2, ("No such command 'tsak'",), cli=lambda ctx: ["tsak"]),
    # -- run: scripts that are not files, limits ----------------------------------------------
    Case(
        "run a fifo as the script",
        2,
        ("the script", "is a fifo; give a Python file to run"),
        cli=lambda ctx: ["run", ctx.path("fifo")],
        setup=fifo,
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
    Case("run --timeout -1", 2, ("--timeout: must be greater than 0",), cli=run("--timeout", "-1")),
    Case(
        "run --timeout nan",
        2,
        ("--timeout: must be a finite number (got nan)",),
        cli=run("--timeout", "nan"),
    ),
    Case(
        "run --cpus nan",
        2,
        ("--cpus: must be a finite number (got nan)",),
        cli=run("--cpus", "nan"),
    ),
    Case(
        "report --out is a file",
        2,
        ("--out", "notes.txt"),
        cli=lambda ctx: [
            "report",
            "x",
            "--db",
            db(ctx, "runs.db"),
            "--out",
            ctx.path("host/notes.txt"),
        ],
    ),
    Case("run --memory lots", 2, ("--memory: expected a size",), cli=run("--memory", "lots")),
    Case("run --pids 1", 2, ("--pids: must be at least 16 (got 1)",), cli=run("--pids", "1")),
    Case("run --cpus 0", 2, ("--cpus: must be greater than 0",), cli=run("--cpus", "0")),
    Case(
        "run --image that is no image reference",
        2,
        ("--image: 'bad image name!' is not an image reference; use NAME[:TAG]",),
        cli=run("--image", "bad image name!"),
    ),
    Case(
        "run --workspace is the home directory",
        2,
        ("is a system directory (or your home directory itself)",),
        never=("chown",),
        cli=run("--workspace", os.path.expanduser("~")),
    ),
    Case(
        "demo --concurrency 0",
        2,
        ("'--concurrency'", "0 is not in the range x>=1"),
        cli=lambda ctx: ["demo", "--concurrency", "0", "--out", ctx.path("d")],
    ),
    Case(
        "task anthropic model without a key",
        2,
        ("--model: AnthropicModel: no API key", "ANTHROPIC_API_KEY"),
        cli=lambda ctx: ["task", "g", "--model", "anthropic:claude-x"],
    ),
    Case(
        "task openai model at a closed port",
        2,
        ("error after 0 attempt(s)", "ModelError", "connection failed"),
        never=("│ 0 ",),
        cli=lambda ctx: ["task", "g", "--model", "openai:http://127.0.0.1:9/v1#m"],
        one_line=False,  # ends as a Result (status error, no attempt), summarised
    ),
]
