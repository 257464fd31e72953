"""Bad files and folders given to ``execloop run``, skills and databases: inputs that are
links out, fifos, devices or too big; workspaces holding the user's files or a system folder;
broken skills; missing, corrupt or read-only databases; output folders that are files."""

from __future__ import annotations

from tests.badinputs.cases_cli import (
    SKILL,
    db,
    fifo,
    leaky_dir,
    nested_leak,
    read_only_db,
    run,
    same_named_input,
    skills,
    sparse,
    workspace,
)
from tests.badinputs.harness import Case

FILE_CASES: list[Case] = [
    # -- run: inputs ---------------------------------------------------------------------------
    Case(
        "run --input dir with a link to a host file",
        2,
        ("d/x is a symbolic link to", "secret.txt", "outside"),
        cli=lambda ctx: run("--input", ctx.path("d"))(ctx),
        setup=leaky_dir,
    ),
    Case(
        "run --input dir with a link up and out",
        2,
        ("d/sub/up is a symbolic link to", "outside"),
        cli=lambda ctx: run("--input", ctx.path("d"))(ctx),
        setup=nested_leak,
    ),
    Case(
        "run --input fifo",
        2,
        ("is a fifo; only regular files and directories can be inputs",),
        cli=lambda ctx: run("--input", ctx.path("fifo"))(ctx),
        setup=fifo,
        timeout_s=60,
    ),
    Case(
        "run --input /dev/zero",
        2,
        ("/dev/zero is a character device; only regular files",),
        cli=run("--input", "/dev/zero"),
        timeout_s=60,
    ),
    Case(
        "run --input 2 GiB over workspace_size",
        2,
        ("the inputs total 2.1 GB", "--workspace DIR"),
        cli=lambda ctx: run("--input", ctx.path("big.bin"))(ctx),
        setup=sparse,
    ),
    Case(
        "run --input named main.py",
        2,
        ("would land as main.py, the name execloop reserves for the script",),
        cli=lambda ctx: run("--input", ctx.file("in/main.py", "x = 1\n"))(ctx),
    ),
    Case(
        "run two inputs, one name",
        2,
        ("x.csv",),
        cli=lambda ctx: run(
            "--input", ctx.file("a/x.csv", "1"), "--input", ctx.file("b/x.csv", "2")
        )(ctx),
    ),
    # -- run: workspaces -----------------------------------------------------------------------
    Case(
        "run --workspace with the user's main.py",
        2,
        ("main.py exists; execloop will not overwrite it",),
        cli=lambda ctx: run("--workspace", ctx.path("ws"))(ctx),
        setup=lambda ctx: workspace(ctx, **{"main.py": "# mine\n"}),
        writable=("ws",),
        keep=("ws/main.py",),
    ),
    Case(
        "run --workspace with a same-named input",
        2,
        ("data.csv exists; execloop will not overwrite it",),
        cli=lambda ctx: run("--workspace", ctx.path("ws"), "--input", ctx.path("data.csv"))(ctx),
        setup=same_named_input,
        writable=("ws",),
        keep=("ws/data.csv",),
    ),
    Case(
        "run --workspace /etc",
        2,
        ("workspace /etc is a system directory", "use a directory of your own"),
        never=("chown",),
        cli=run("--workspace", "/etc"),
    ),
    Case(
        "run --workspace /",
        2,
        ("workspace / is a system directory",),
        never=("chown",),
        cli=run("--workspace", "/"),
    ),
    Case(
        "run --workspace is a file",
        2,
        ("'--workspace'", "notes.txt' is a file"),
        cli=lambda ctx: run("--workspace", ctx.path("host/notes.txt"))(ctx),
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
            skills(ctx, good=SKILL.format(name="good"), bad="---\nname: bad\n---\n"),
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
            skills(ctx, bin=b"\x89PNG\r\n\x1a\n\x00"),
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
        ("no database at", "typo.db: check the path"),
        cli=lambda ctx: ["runs", "--db", ctx.path("typo.db")],
        verify=lambda ctx, _: ["created typo.db"] if (ctx.root / "typo.db").exists() else [],
    ),
    Case(
        "runs --db a fifo",
        2,
        ("is not a regular file, so it is not an execloop database",),
        cli=lambda ctx: ["runs", "--db", ctx.path("fifo")],
        setup=fifo,
        timeout_s=60,
    ),
    Case(
        "runs --db a directory",
        2,
        ("'--db'", "is a directory"),
        cli=lambda ctx: ["runs", "--db", ctx.path("host")],
    ),
    Case(
        "skills list --dir a fifo",
        2,
        ("not a folder of skills",),
        cli=lambda ctx: ["skills", "list", "--dir", ctx.path("fifo")],
        setup=fifo,
        timeout_s=60,
    ),
    Case(
        "skills validate a folder without SKILL.md",
        1,
        ("SKILL.md: not found; a skill is a folder with a SKILL.md",),
        cli=lambda ctx: ["skills", "validate", ctx.path("host")],
    ),
    Case(
        "runs --db corrupt",
        2,
        ("junk.db is not an execloop database",),
        cli=lambda ctx: ["runs", "--db", ctx.file("junk.db", b"not a database at all" * 100)],
    ),
    Case(
        "runs --db read-only archive",
        0,
        (),
        cli=lambda ctx: ["runs", "--db", ctx.path("archive/runs.db")],
        setup=read_only_db,
    ),
    Case(
        "report unknown run",
        2,
        ("no run 'nope' in", "lists them"),
        cli=lambda ctx: ["report", "nope", "--db", db(ctx, "runs.db"), "--out", ctx.path("rep")],
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
