"""Runs one bad-input case against the installed ``execloop`` and judges what it left behind.

Every case runs in its own folder (``root``): its own ``TMPDIR`` (``root/tmp``, so a leftover
``execloop-*`` directory is exactly this case's), a decoy folder with a secret the user never
meant to share (``root/host/secret.txt``), and whatever the case's ``setup`` creates. The
command is the real CLI (``python -m execloop.runtime.cli``) or a Python API call
(``python -c``), each process carrying a marker in its environment. Afterwards:

- **hang**: a command did not end within the case's timeout (it is killed);
- **traceback**: ``Traceback`` was printed (stdout or stderr);
- **exposure**: the secret's content reached the output or a file the run wrote;
- **lost data**: a file outside the case's writable folders (or one the case keeps) changed;
- **leak**: a process carrying the marker, an ``execloop-*`` temp dir of the case's processes,
  or a container labelled by one of them remains;
- **wrong status**: the exit status differs, a fragment of the message is missing (or a
  forbidden one is present), or the case's own ``verify`` found a problem;
- **clear**: none of the above.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

OUTCOMES = (
    "clear",
    "traceback",
    "hang",
    "leak",
    "lost data",
    "host-file exposure",
    "wrong status",
)
MARKER_ENV = "EXECLOOP_BADINPUT_CASE"
CLI = (sys.executable, "-m", "execloop.runtime.cli")
# The API wrapper: an execloop (or pydantic: ValueError) error is the API's clear refusal,
# printed as one line with exit 2; anything else escapes as a traceback.
API_WRAPPER = """\
import sys
from execloop.errors import ExecloopError
try:
    exec(compile(sys.argv[1], "<case>", "exec"), {"__name__": "case"})
except (ExecloopError, ValueError, TypeError) as exc:
    print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(2)
"""


@dataclass
class Context:
    """One case's folder, environment and the processes it started."""

    root: Path
    marker: str
    timeout_s: float
    pids: list[int] = field(default_factory=list)
    hung: bool = False

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def secret(self) -> Path:
        return self.root / "host" / "secret.txt"

    def path(self, name: str) -> str:
        return str(self.root / name)

    def file(self, name: str, data: bytes | str = "") -> str:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(target)

    def env(self) -> dict[str, str]:
        keys = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")  # no case ever reaches a real LLM API
        return {
            **{name: value for name, value in os.environ.items() if name not in keys},
            "TMPDIR": str(self.tmp),
            MARKER_ENV: self.marker,
            "COLUMNS": "300",  # long paths are not folded over two lines
            "NO_COLOR": "1",
        }

    def spawn(self, argv: list[str], **options: Any) -> subprocess.Popen[str]:
        """Start a command of the case; its pid is remembered to find what it left."""
        process = subprocess.Popen(
            argv,
            cwd=self.root / "cwd",
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            **options,
        )
        self.pids.append(process.pid)
        return process

    def finish(self, process: subprocess.Popen[str]) -> tuple[int, str, str]:
        """Wait for ``process`` (killed at the case's timeout: a hang)."""
        try:
            stdout, stderr = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self.hung = True
            process.kill()
            stdout, stderr = process.communicate()
        return process.returncode, stdout, stderr

    def execloop(self, *args: str) -> tuple[int, str, str]:
        return self.finish(self.spawn([*CLI, *args]))

    def api(self, code: str) -> tuple[int, str, str]:
        return self.finish(self.spawn([sys.executable, "-c", API_WRAPPER, code]))


Command = Callable[[Context], list[str]]


@dataclass(frozen=True)
class Case:
    """One bad input: what it runs, what it must say, what status it must end with.

    ``cli`` builds the arguments of ``execloop``; ``api`` is Python code run against the API;
    ``drive`` runs several commands itself (concurrent or killed ones) and returns the status
    and output judged. ``status`` may be a tuple: a racy input with more than one right end
    (then ``verify=either(...)`` says what each end must print). ``says`` are fragments of
    the output (whitespace folded) that must all appear, ``never`` ones that must not.
    ``writable`` are the folders (relative to the case root) the run may change; ``keep`` the
    files in them that must stay as they were."""

    id: str
    status: int | tuple[int, ...]
    says: tuple[str, ...]
    cli: Command | None = None
    api: str | Callable[[Context], str] | None = None
    drive: Callable[[Context], tuple[int, str, str]] | None = None
    setup: Callable[[Context], None] | None = None
    verify: Callable[[Context, str], list[str]] | None = None
    never: tuple[str, ...] = ()
    one_line: bool = True  # a refused command says why in one "error: " line (not a Result)
    writable: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    docker: bool = False
    slow: bool = False
    timeout_s: float = 120.0
    settle_s: float = 10.0  # how long a janitor may take to clean up after its owner ended


@dataclass(frozen=True)
class Verdict:
    case: str
    outcome: str
    problems: tuple[str, ...]
    status: int
    output: str
    seconds: float


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    if not path.is_file():
        return f"mode:{path.lstat().st_mode:o}"
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
    stat = path.lstat()
    return f"{stat.st_size}:{stat.st_mode:o}:{sha.hexdigest()}"


def snapshot(case: Case, root: Path) -> dict[str, str]:
    """Every path under ``root`` that the case must not change, with its content digest."""
    skip = {root / "tmp", *(root / name for name in case.writable)}
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            if path.stat(follow_symlinks=False).st_size > 1 << 30:  # sparse inputs: by size
                found[str(path.relative_to(root))] = f"size:{path.lstat().st_size}"
            else:
                found[str(path.relative_to(root))] = _digest(path)
    for name in case.keep:
        path = root / name
        found[name] = _digest(path) if path.exists() or path.is_symlink() else "missing"
    return found


def _written_text(case: Case, root: Path) -> Iterator[bytes]:
    for name in case.writable:
        for folder, _, files in os.walk(root / name):
            for file in files:
                path = Path(folder) / file
                if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 22:
                    yield path.read_bytes()


def _marked_processes(ctx: Context) -> list[str]:
    """Processes carrying the case's marker, or naming its folder (a sandbox's tree gets no
    host environment, but its command line names the folders bound into it)."""
    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            named = any(str(ctx.root) in arg for arg in process.info["cmdline"] or ())
            if named or process.environ().get(MARKER_ENV) == ctx.marker:
                found.append(f"{process.info['name']}[{process.info['pid']}]")
    return found


def _temp_dirs(ctx: Context) -> list[str]:
    owners = tuple(f"-{pid}." for pid in ctx.pids)
    shared = Path(tempfile.gettempdir())
    mine = [p for p in shared.glob("execloop-*") if any(o in p.name for o in owners)]
    return sorted(str(p) for p in [*ctx.tmp.glob("execloop-*"), *mine])


def containers_of(ctx: Context, docker: Any) -> list[str]:
    if docker is None:
        return []
    owners = tuple(f"{socket.gethostname()}:{pid}:" for pid in ctx.pids)
    listed = docker.containers.list(
        all=True, filters={"label": "org.execloop.managed"}, ignore_removed=True
    )
    return [c.name for c in listed if c.labels.get("org.execloop.owner", "").startswith(owners)]


def leftovers(ctx: Context, docker: Any, *, settle_s: float = 10.0) -> list[str]:
    """What the case left, after giving janitors up to ``settle_s`` to finish."""
    deadline = time.monotonic() + settle_s
    while True:
        left = [
            *(f"process {p}" for p in _marked_processes(ctx)),
            *(f"temp dir {p}" for p in _temp_dirs(ctx)),
            *(f"container {c}" for c in containers_of(ctx, docker)),
        ]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


def _clean_up(ctx: Context, docker: Any) -> None:
    """Remove what a failing case left, so that one failure does not spill into the next."""
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get(MARKER_ENV) == ctx.marker:
                process.kill()
    if docker is not None:
        for name in containers_of(ctx, docker):
            with contextlib.suppress(Exception):
                docker.containers.get(name).remove(force=True)
    for path in _temp_dirs(ctx):
        shutil.rmtree(path, ignore_errors=True)


def either(*ends: tuple[str, ...]) -> Callable[[Context, str], list[str]]:
    """A ``verify`` for an input with several right ends: all fragments of one must appear."""

    def verify(ctx: Context, output: str) -> list[str]:
        text = folded(output)
        if any(all(folded(words) in text for words in end) for end in ends):
            return []
        return [f"none of the expected ends {ends!r}"]

    return verify


def folded(text: str) -> str:
    return " ".join(text.split())


def judge(
    case: Case, ctx: Context, status: int, stdout: str, stderr: str, *, docker: Any
) -> list[tuple[str, str]]:
    """Every (outcome, problem) the case shows; empty when it is clear."""
    problems: list[tuple[str, str]] = []
    output = folded(stdout + "\n" + stderr)
    if ctx.hung:
        problems.append(("hang", f"did not end within {case.timeout_s:.0f}s"))
    if "Traceback" in stdout + stderr:
        problems.append(("traceback", "printed a traceback"))
    secret = ctx.secret.read_text()
    if secret in stdout + stderr or any(
        secret.encode() in t for t in _written_text(case, ctx.root)
    ):
        problems.append(("host-file exposure", "the host secret reached the output"))
    for what in leftovers(ctx, docker, settle_s=case.settle_s):
        problems.append(("leak", what))
    allowed = case.status if isinstance(case.status, tuple) else (case.status,)
    if status not in allowed:
        problems.append(("wrong status", f"exit {status}, expected {case.status}"))
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    if case.cli is not None and case.one_line and status == 2 and len(errors) != 1:
        problems.append(("wrong status", f"{len(errors)} 'error: ' lines, expected one"))
    for words in case.says:
        if folded(words) not in output:
            problems.append(("wrong status", f"missing {words!r}"))
    for words in case.never:
        if folded(words) in output:
            problems.append(("wrong status", f"says {words!r}"))
    if case.verify is not None:
        problems.extend(("wrong status", p) for p in case.verify(ctx, stdout + stderr))
    return problems


def run_case(case: Case, *, base: Path, docker: Any = None) -> Verdict:
    """Set the case up under ``base``, run it, judge it, remove its folder."""
    root = Path(tempfile.mkdtemp(prefix="case-", dir=base))
    root.chmod(0o755)  # a sandbox runs as uid 1000: TMPDIR and inputs must be reachable
    ctx = Context(root=root, marker=uuid.uuid4().hex, timeout_s=case.timeout_s)
    for folder in ("tmp", "cwd", "host"):
        (root / folder).mkdir()
    ctx.secret.write_text(f"SECRET-{ctx.marker}\n")
    (root / "host" / "notes.txt").write_text("the user's own file\n")
    if case.setup is not None:
        case.setup(ctx)
    args = case.cli(ctx) if case.cli is not None else None  # may create files: before the
    code = case.api(ctx) if callable(case.api) else case.api  # snapshot
    before = snapshot(case, root)
    began = time.monotonic()
    if case.drive is not None:
        status, stdout, stderr = case.drive(ctx)
    elif args is not None:
        status, stdout, stderr = ctx.execloop(*args)
    else:
        assert code is not None, f"case {case.id} runs nothing"
        status, stdout, stderr = ctx.api(code)
    seconds = time.monotonic() - began
    problems = judge(case, ctx, status, stdout, stderr, docker=docker)
    after = snapshot(case, root)
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            problems.append(("lost data", f"{name} changed outside the workspace"))
    _clean_up(ctx, docker)
    order = {outcome: rank for rank, outcome in enumerate(OUTCOMES[1:])}
    problems.sort(key=lambda problem: order[problem[0]])
    shutil.rmtree(root, ignore_errors=True)
    return Verdict(
        case=case.id,
        outcome=problems[0][0] if problems else "clear",
        problems=tuple(f"{kind}: {what}" for kind, what in problems),
        status=status,
        output=(stdout + "\n" + stderr)[-4000:],
        seconds=seconds,
    )
