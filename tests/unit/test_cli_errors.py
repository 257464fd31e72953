"""Bad input, table-driven: every case is one clear line and an exit status, never a traceback.

CLI cases run ``execloop`` through ``click.testing.CliRunner`` (the real command group, its
real error boundary); API cases call the Python API. Each case names what it feeds, the exit
status (or exception) expected, and words the message must contain. Cases that would start a
sandbox are refused before one starts, so none is needed here.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import click
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from execloop.errors import (
    BrokerBusyError,
    BrokerStoppedError,
    ConfigError,
    ExecloopError,
    MissingExtraError,
    SkillError,
)
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.cli import cli
from execloop.runtime.cli_boundary import GuardedGroup, flags
from execloop.runtime.loop import SubAgent
from execloop.runtime.models.base import ModelReply, ModelRequest
from execloop.runtime.skills import find_skill, load_skill, scan_skills
from execloop.runtime.task import Budget, Task, TaskStatus
from execloop.sandboxes import Sandbox, SandboxSpec
from execloop.sandboxes.kernelspecs import install_kernelspecs

GOOD_SKILL = """---
name: {name}
description: Writes result.json.
version: 1.0.0
inputs:
  type: object
  required: [n]
  properties:
    n: {{type: integer}}
---
# {name}

Write result.json.
"""


@dataclass(frozen=True)
class Case:
    """``args(tmp_path)`` → exit ``status`` with every one of ``says`` in the error line."""

    id: str
    args: Callable[[Path], list[str]]
    status: int
    says: tuple[str, ...]


def _replies(tmp_path: Path) -> str:
    path = tmp_path / "replies.yaml"
    path.write_text('- "print(1)"\n')
    return f"scripted:{path}"


def _task(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["task", "make result.json", "--model", _replies(tmp), *extra]


def _file(tmp: Path, name: str, data: bytes | str) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


_MINE = (
    "---\nname: mine\ndescription: A skill from a --skill-dir.\nversion: 1.0.0\n"
    "inputs: {type: object, required: [rows], properties: {rows: {type: integer}}}\n---\nDo it.\n"
)


def _skill_dir(tmp: Path, **files: bytes | str) -> str:
    for name, data in files.items():
        _file(tmp / "skills" / name, "SKILL.md", data)
    return str(tmp / "skills")


def _same_name_inputs(tmp: Path) -> list[str]:
    one, two = _file(tmp / "a", "x.csv", "1\n"), _file(tmp / "b", "x.csv", "2\n")
    return _task("--input", one, "--input", two)(tmp)


def _prefix_with_share_file(tmp: Path) -> list[str]:
    _file(tmp / "env", "share", "not a folder")
    return ["kernels", "install", "--prefix", str(tmp / "env")]


CLI_CASES = [
    Case("empty goal", lambda t: ["task", "", "--model", _replies(t)], 2, ("GOAL: must not be",)),
    Case("blank goal", lambda t: ["task", "  \t", "--model", _replies(t)], 2, ("GOAL:",)),
    Case("0 attempts", _task("--max-attempts", "0"), 2, ("--max-attempts: must be at least 1",)),
    Case("-1 attempts", _task("--max-attempts", "-1"), 2, ("--max-attempts: must be at least",)),
    Case("201 attempts", _task("--max-attempts", "201"), 2, ("--max-attempts: must be at most",)),
    Case("0 tokens", _task("--max-tokens", "0"), 2, ("--max-tokens: must be at least 1",)),
    Case("nan time", _task("--max-time", "nan"), 2, ("--max-time: must be a finite number",)),
    Case("inf time", _task("--max-time", "inf"), 2, ("--max-time: must be a finite number",)),
    Case("zero time", _task("--max-time", "0"), 2, ("--max-time: must be greater than 0",)),
    Case("text attempts", _task("--max-attempts", "x"), 2, ("'--max-attempts'", "integer")),
    Case(
        "check that cannot compile",
        _task("--check", "result["),
        2,
        ("--check: check expression 'result[' does not compile",),
    ),
    Case(
        "check RestrictedPython refuses",
        _task("--check", '__import__("os").getcwd()'),
        2,
        ("--check:", "__import__", "starts with"),
    ),
    Case("empty check", _task("--check", " "), 2, ("--check: an expression check needs",)),
    Case("statement as check", _task("--check", "x = 1"), 2, ("--check:", "does not compile")),
    Case(
        "bad model spec",
        lambda t: ["task", "g", "--model", "gpt"],
        2,
        ("--model: bad model spec 'gpt'", "scripted:FILE"),
    ),
    Case(
        "missing replies file",
        lambda t: ["task", "g", "--model", f"scripted:{t}/none.yaml"],
        2,
        ("--model: scripted replies file", "none.yaml"),
    ),
    Case(
        "binary replies file",
        lambda t: ["task", "g", "--model", "scripted:" + _file(t, "r.yaml", b"\xff\xfe\x00")],
        2,
        ("--model: scripted replies file",),
    ),
    Case(
        "unknown skill",
        _task("--skill", "nope"),
        2,
        ("--skill: unknown skill 'nope'; available: data-balance, data-clean",),
    ),
    Case(
        "unknown skill, with a skill dir",
        lambda t: _task("--skill", "nope", "--skill-dir", _skill_dir(t, mine=_MINE))(t),
        2,
        ("--skill: unknown skill 'nope'; available: data-balance, data-clean,", "mine"),
    ),
    Case(
        "skill dir missing",
        _task("--skill", "x", "--skill-dir", "/nonexistent/skills"),
        2,
        ("'--skill-dir'", "does not exist"),
    ),
    Case("two inputs, one name", _same_name_inputs, 2, ("--input:", "x.csv")),
    Case("missing input", _task("--input", "/nonexistent/in.csv"), 2, ("'--input'", "not exist")),
    Case(
        "kernels prefix missing",
        lambda t: ["kernels", "install", "--prefix", f"{t}/nonexistent"],
        2,
        ("--prefix:", "nonexistent is not an existing directory", "root of a Python environment"),
    ),
    Case(
        "kernels prefix is a file",
        lambda t: ["kernels", "install", "--prefix", _file(t, "f", "x")],
        2,
        ("--prefix:", "is not an existing directory"),
    ),
    Case(
        "kernels prefix unwritable",
        _prefix_with_share_file,
        2,
        ("--prefix: cannot write the kernelspecs under", "choose a prefix you can write to"),
    ),
    Case(
        "skills show unknown",
        lambda t: ["skills", "show", "nope"],
        2,
        ("unknown skill 'nope'; available: data-balance, data-clean, dpo, eval",),
    ),
    Case(
        "skills show binary SKILL.md",
        lambda t: ["skills", "show", "bin", "--dir", _skill_dir(t, bin=b"\x89PNG\r\n\x1a\n\x00")],
        2,
        ("bin/SKILL.md: not UTF-8 text (byte 0x89 at offset 0)",),
    ),
    Case(
        "skills show broken",
        lambda t: ["skills", "show", "bad", "--dir", _skill_dir(t, bad="---\nname: bad\n---\n")],
        2,
        ("bad/SKILL.md: invalid (4 problems): description: required field is missing;",),
    ),
    Case(
        "run: negative timeout",
        lambda t: ["run", _file(t, "s.py", "print(1)"), "--timeout", "-1"],
        2,
        ("--timeout: must be greater than 0",),
    ),
    Case(
        "run: bad memory",
        lambda t: ["run", _file(t, "s.py", "print(1)"), "--memory", "lots"],
        2,
        ("--memory: expected a size",),
    ),
    Case(
        "run: too few pids",
        lambda t: ["run", _file(t, "s.py", "print(1)"), "--pids", "1"],
        2,
        ("--pids: must be at least 16 (got 1)",),
    ),
    Case("unknown command", lambda t: ["tsak"], 2, ("No such command 'tsak'",)),
    Case("unknown option", lambda t: ["doctor", "--fast"], 2, ("No such option", "--fast")),
]


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, prog_name="execloop")


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.id for case in CLI_CASES])
def test_cli_bad_input_is_one_clear_line(case: Case, tmp_path: Path) -> None:
    done = _invoke(case.args(tmp_path))
    assert done.exit_code == case.status, done.output
    assert "Traceback" not in done.output
    lines = _error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for words in case.says:
        assert words in lines[0]
    assert "--timeout-s" not in done.output and "_s:" not in lines[0]  # flags, not fields


def test_the_flags_named_in_errors_exist() -> None:
    """Each flag an error message can name is a real flag of the command that ran."""
    task = cli.commands["task"]
    run = cli.commands["run"]
    install = cli.commands["kernels"].commands["install"]
    for command, names in (
        (task, ("--max-attempts", "--max-tokens", "--max-time", "--check", "--input", "--skill")),
        (task, ("--model",)),
        (run, ("--timeout", "--memory", "--cpus", "--pids", "--image", "--workspace")),
        (install, ("--prefix",)),
    ):
        known = {opt for param in command.params for opt in param.opts}
        assert set(names) <= known, set(names) - known


def test_version() -> None:
    done = _invoke(["--version"])
    assert done.exit_code == 0 and done.stdout.startswith("execloop, version ")


def test_skills_list_shows_the_good_skills_and_reports_each_broken_one(tmp_path: Path) -> None:
    folder = _skill_dir(
        tmp_path,
        good=GOOD_SKILL.format(name="good"),
        binary=b"\x89PNG\r\n\x1a\n",
        bad="---\nname: bad\n---\n",
    )
    done = _invoke(["skills", "list", "--dir", folder])
    assert done.exit_code == 1 and "Traceback" not in done.output
    assert "good" in done.stdout and "data-clean" in done.stdout  # built-in ones still listed
    broken = _error_lines(done.stderr)
    assert len(broken) == 2, done.stderr
    assert broken[0].startswith("broken skill: ") and "bad/SKILL.md: invalid" in broken[0]
    assert "binary/SKILL.md: not UTF-8 text" in broken[1]
    listed = _invoke(["skills", "list", "--json", "--dir", folder])
    assert "good" in [skill["name"] for skill in json.loads(listed.stdout)]
    clean = _invoke(
        ["skills", "list", "--dir", _skill_dir(tmp_path / "ok", ok=GOOD_SKILL.format(name="ok"))]
    )
    assert clean.exit_code == 0 and clean.stderr == ""


# -- the error boundary itself: what escapes a command -----------------------------------------


def _boundary_with(error: BaseException) -> click.Group:
    @click.group(cls=GuardedGroup)
    @click.option("-v", "--verbose", is_flag=True)
    def group(verbose: bool) -> None:
        pass

    @group.command()
    def boom() -> None:
        raise error

    return group


def _validation_error() -> ValidationError:
    try:
        Budget(max_attempts=0)
    except ValidationError as exc:
        return exc
    raise AssertionError("Budget(max_attempts=0) was accepted")


_REPORT = " (run with -v for the traceback; please report it)"
BOUNDARY_CASES = [
    (
        "execloop error",
        ConfigError("the thing is wrong:\n  fix it"),
        2,
        "error: the thing is wrong: fix it",
    ),
    ("validation error", _validation_error(), 2, "error: max_attempts: must be at least 1 (got 0)"),
    (
        "user path",
        PermissionError(13, "Permission denied", "/srv/out"),
        2,
        "error: /srv/out: Permission denied",
    ),
    (
        "no path",
        OSError(28, "No space left on device"),
        70,
        "execloop: internal error: OSError: [Errno 28] No space left on device" + _REPORT,
    ),
    (
        "a bug",
        KeyError("x"),
        70,
        "execloop: internal error: KeyError: 'x'" + _REPORT,
    ),
    ("ctrl-c", KeyboardInterrupt(), 130, "execloop: interrupted"),
    (
        "escapes in a message",
        ConfigError("bad \x1b]0;title\x07 name"),
        2,
        "error: bad \\x1b]0;title\\x07 name",
    ),
]


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [case[1:] for case in BOUNDARY_CASES],
    ids=[case[0] for case in BOUNDARY_CASES],
)
def test_what_escapes_a_command_is_one_line(error: BaseException, status: int, line: str) -> None:
    group = _boundary_with(error)
    done = CliRunner().invoke(group, ["boom"], prog_name="execloop")
    assert done.exit_code == status
    assert _error_lines(done.stderr) == [line]
    assert "Traceback" not in done.output
    verbose = CliRunner().invoke(group, ["-v", "boom"], prog_name="execloop")
    assert verbose.exit_code == status
    assert "Traceback (most recent call last)" in verbose.stderr  # -v: the traceback first
    assert _error_lines(verbose.stderr)[-1] == line


# -- the Python API: refused when built, with the field named ---------------------------------


API_CASES: list[tuple[str, Callable[[Path], object], type[BaseException], str]] = [
    ("Budget attempts 0", lambda t: Budget(max_attempts=0), ValidationError, "max_attempts"),
    ("Budget tokens 0", lambda t: Budget(max_tokens=0), ValidationError, "max_tokens"),
    ("Budget time nan", lambda t: Budget(max_wall_time_s=math.nan), ValidationError, "finite"),
    ("Budget time inf", lambda t: Budget(max_wall_time_s=math.inf), ValidationError, "finite"),
    ("Task blank goal", lambda t: Task(goal=" \n"), ValidationError, "must not be empty"),
    (
        "ExpressionCheck does not compile",
        lambda t: ExpressionCheck(expr="result["),
        ValidationError,
        "check expression 'result[' does not compile",
    ),
    (
        "Task check as a dict",
        lambda t: Task(goal="g", checks=({"kind": "expression", "expr": "result._x"},)),
        ValidationError,
        '"_x" is an invalid attribute name',
    ),
    (
        "SubAgent with an unknown skill",
        lambda t: SubAgent(Task(goal="g", skill="no-such-skill"), model=_CountingModel()),
        SkillError,
        "unknown skill 'no-such-skill'; available: data-balance, data-clean,",
    ),
    (
        "SubAgent given another skill than the task's",
        lambda t: SubAgent(
            Task(goal="g", skill="data-clean"),
            model=_CountingModel(),
            skill=find_skill("data-balance"),
        ),
        ConfigError,
        "names skill 'data-clean' but SubAgent was given 'data-balance'",
    ),
    (
        "SKILL.md not UTF-8",
        lambda t: load_skill(Path(_skill_dir(t, latin=b"---\nname: caf\xe9\n---\n")) / "latin"),
        SkillError,
        "latin/SKILL.md: not UTF-8 text (byte 0xe9 at offset 13)",
    ),
    (
        "kernelspecs prefix missing",
        lambda t: install_kernelspecs(t / "none"),
        ConfigError,
        "none is not an existing directory",
    ),
]


@pytest.mark.parametrize(
    ("call", "kind", "words"),
    [case[1:] for case in API_CASES],
    ids=[case[0] for case in API_CASES],
)
def test_api_bad_input_is_refused_when_built(
    call: Callable[[Path], object], kind: type[BaseException], words: str, tmp_path: Path
) -> None:
    with pytest.raises(kind) as caught:
        call(tmp_path)
    assert words in str(caught.value)


def test_an_uncompilable_check_is_a_config_error_inside_the_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ExpressionCheck(expr="result[")
    assert isinstance(caught.value.errors()[0]["ctx"]["error"], ConfigError)


def test_a_fifo_named_skill_md_is_refused_without_blocking(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    os.mkfifo(folder / "SKILL.md")
    with pytest.raises(SkillError, match=r"SKILL\.md"):
        load_skill(folder)
    good, broken = scan_skills(tmp_path)
    assert good == [] and broken == []  # not a file: not a skill folder


def test_flags_attributes_an_execloop_error_to_one_flag() -> None:
    with pytest.raises(click.UsageError, match=r"^--model: bad: fix it$"), flags("--model"):
        raise ConfigError("bad:\n  fix it")
    # a mapping translates validation errors only
    with pytest.raises(ConfigError, match="not mine"), flags({"goal": "GOAL"}):
        raise ConfigError("not mine")


# -- pre-flight: a skill task that can never pass ends before attempt 1 ------------------------


class _CountingModel:
    """A model that counts its calls; the pre-flight cases must never reach it."""

    name = "counting"
    scripted = True

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        return ModelReply(text="", script=None, model=self.name, scripted=True)


def _no_sandbox(spec: SandboxSpec) -> Sandbox:
    raise AssertionError("the pre-flight must refuse the task before any sandbox")


PREFLIGHT_CASES: list[tuple[str, bytes | None, str]] = [
    ("no task.json", None, "skill 'data-clean' needs the input(s) data, schema: add a task.json"),
    ("not JSON", b'{"data": ', "task.json: not valid JSON"),
    ("not UTF-8", b'{"data": "\xff"}', "task.json: not UTF-8 text"),
    ("a list", b"[1, 2]", "task.json: must be a JSON object, got list"),
    ("missing input", b'{"data": "a.csv"}', "(root): 'schema' is a required property"),
    (
        "wrong type",
        b'{"data": "a.csv", "schema": "s.json", "key": "id"}',
        "key: 'id' is not of type 'array'",
    ),
    ("bad pattern", b'{"data": "a.txt", "schema": "s.json"}', "data: 'a.txt' does not match"),
    ("unknown input", b'{"data": "a.csv", "schema": "s.json", "rows": 3}', "'rows' was unexpected"),
]


@pytest.mark.parametrize(
    ("task_json", "words"),
    [case[1:] for case in PREFLIGHT_CASES],
    ids=[case[0] for case in PREFLIGHT_CASES],
)
def test_preflight_ends_a_skill_task_that_can_never_pass(
    task_json: bytes | None, words: str, tmp_path: Path
) -> None:
    inputs = () if task_json is None else (Path(_file(tmp_path, "task.json", task_json)),)
    task = Task(goal="clean it", skill="data-clean", inputs=inputs)
    model = _CountingModel()
    events: list[str] = []
    agent = SubAgent(
        task,
        model=model,
        skill=find_skill("data-clean"),
        sandbox_factory=_no_sandbox,
        on_event=lambda event: events.append(event.kind),
    )
    result = anyio.run(agent.run)
    assert result.status is TaskStatus.ERROR and result.attempts == 0
    assert result.error is not None and result.error.startswith("ConfigError: ")
    assert words in result.error
    assert model.calls == 0 and result.usage.requests == 0
    assert events == ["finished"]


def test_preflight_accepts_a_task_json_that_fits(tmp_path: Path) -> None:
    task_json = Path(_file(tmp_path, "task.json", '{"data": "a.csv", "schema": "s.json"}'))
    task = Task(goal="clean it", skill="data-clean", inputs=(task_json,))
    agent = SubAgent(task, model=_CountingModel(), skill=find_skill("data-clean"))
    agent.preflight()  # no error: every required input is given and fits the schema
    hparam = find_skill("hparam-config")  # its defaults cover some required inputs, not all
    agent = SubAgent(Task(goal="g", skill=hparam.name), model=_CountingModel(), skill=hparam)
    with pytest.raises(ConfigError, match=r"needs the input\(s\) method, model_params_b"):
        agent.preflight()


def test_cli_preflight_result_has_no_attempts_and_no_model_request(tmp_path: Path) -> None:
    task_json = _file(tmp_path, "task.json", '{"data": "x.txt"}')
    args = _task("--skill", "data-clean", "--input", task_json, "--json")(tmp_path)
    done = _invoke(args)
    assert done.exit_code == 2 and "Traceback" not in done.output
    result = json.loads(done.stdout)
    assert (result["status"], result["attempts"], result["usage"]["requests"]) == ("error", 0, 0)
    assert "data: 'x.txt' does not match" in result["error"]
    human = _invoke(args[:-1])
    assert "attempt 0" not in human.output and "│ 0 " not in human.output  # no phantom row
    assert "error after 0 attempt(s)" in human.stderr


def test_task_resolves_a_skill_from_skill_dir(tmp_path: Path) -> None:
    """The skill is found in --skill-dir and judges the task before anything runs: its
    required input is missing, so the result is an invalid_task error, shown with its kind."""
    args = _task("--skill", "mine", "--skill-dir", _skill_dir(tmp_path, mine=_MINE))(tmp_path)
    done = _invoke([*args, "--json"])
    assert done.exit_code == 2, done.output
    result = json.loads(done.stdout)
    assert (result["status"], result["error_kind"], result["attempts"]) == (
        "error",
        "invalid_task",
        0,
    )
    assert "skill 'mine' needs the input(s) rows" in result["error"]
    human = _invoke(args)
    assert "invalid_task error: ConfigError: skill 'mine' needs" in " ".join(human.stderr.split())


def test_execloop_errors_from_commands_are_one_line() -> None:
    """Every ExecloopError subclass reaching the boundary is one line, exit 2."""
    fields: dict[type[ExecloopError], dict[str, Any]] = {
        BrokerBusyError: {"pending": 2, "max_pending": 2},
        BrokerStoppedError: {"task_id": "t"},
        MissingExtraError: {"extra": "smolagents", "name": "smolagents"},
    }
    for kind in ExecloopError.__subclasses__():
        group = _boundary_with(kind("first line\nsecond line", **fields.get(kind, {})))
        done = CliRunner().invoke(group, ["boom"], prog_name="execloop")
        assert done.exit_code == 2
        assert _error_lines(done.stderr) == ["error: first line; second line"], kind


def test_ctrl_c_is_one_line_and_exit_130() -> None:
    """SIGINT while the model call is in flight (the fake has received it and holds the reply),
    so the interrupt lands at the same point however loaded the machine is."""
    import time

    from tests.fakes.anthropic_server import FakeAnthropicServer

    with FakeAnthropicServer() as server:
        server.push_reply(script="print(1)", delay_s=600)  # the model "thinks" long
        env = {**os.environ, "ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "sk-x"}
        process = subprocess.Popen(
            [sys.executable, "-m", "execloop.runtime.cli", "task", "g", "--model", "anthropic:m"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            for _ in range(1200):  # until the request arrives (at most 2 minutes)
                if server.requests or process.poll() is not None:
                    break
                time.sleep(0.1)
            assert server.requests, "the CLI never called the model"
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130, stderr
    # the live table shows the attempt that was cut short; the last word is the interrupt
    assert _error_lines(stderr)[-1] == "execloop: interrupted" and stdout == ""
    assert "Traceback" not in stderr and "error" not in stderr


# -- what reaches a terminal: control characters spelled out; --json exact --------------------


def test_summary_and_table_neutralise_control_characters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    from execloop.runtime import task_cli
    from execloop.runtime.checks import CheckOutcome
    from execloop.runtime.loop import LoopEvent
    from execloop.runtime.progress_view import ProgressView
    from execloop.runtime.task import Result
    from execloop.sandboxes import ExecResult, ExitReason
    from execloop.sandboxes.progress import ProgressEvent

    hostile = "\x1b]0;pwned\x07\x1b[2J\x9b31m[bold]x[/bold]\u202e"
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=200)
    monkeypatch.setattr(task_cli, "console", terminal)
    monkeypatch.setattr(task_cli, "out", terminal)
    result = Result(
        task_id="t",
        status=TaskStatus.FAILED,
        answer=f"answer {hostile}\nline two",
        checks=[CheckOutcome(name="check", kind="expression", passed=False, reason=hostile)],
        error=f"ModelError: {hostile}",
    )
    task_cli._summary(result)
    table = task_cli._AttemptTable("", ProgressView(terminal))
    table.on_event(LoopEvent("attempt", 1))
    metric = ProgressEvent(step=1, total=2, metrics={hostile: 1.0}, time=0)  # a script's name
    table.on_event(LoopEvent("progress", 1, {"event": metric}))
    run = ExecResult(exit_reason=ExitReason.ERROR, exit_code=1, duration_s=0.1)
    table.on_event(LoopEvent("ran", 1, {"run": run}))
    outcome = CheckOutcome(name=hostile, kind="expression", passed=False, reason="")
    table.on_event(LoopEvent("checked", 1, {"outcomes": [outcome]}))
    table.on_event(LoopEvent("finished", 0))  # outside any attempt: no row
    terminal.print(table)
    shown = screen.getvalue() + capsys.readouterr().out
    for raw in ("\x1b]", "\x07", "\x1b[2J", "\x9b", "\u202e"):
        assert raw not in shown
    assert "\\x1b]0;pwned\\x07" in shown and "[bold]x[/bold]" in shown  # visible, not markup
    assert "answer " in shown and "line two" in shown
    assert list(table.rows) == [1]
    bar = Console(file=io.StringIO(), force_terminal=True, width=300)
    bar.print(table.progress)
    drawn = bar.file.getvalue()  # type: ignore[attr-defined]
    assert "1/2" in drawn and "\\x1b]0;pwned\\x07" in drawn and "[bold]x[/bold]" in drawn


def test_the_broker_gets_the_same_preflight(tmp_path: Path) -> None:
    from execloop.runtime.broker import Broker

    model = _CountingModel()
    task = Task(goal="clean it", skill="data-clean")

    async def main() -> Any:
        broker = Broker(
            db=tmp_path / "runs.db", model=model, sandbox_factory=_no_sandbox, reap_orphans=False
        )
        async with broker:
            return await broker.result(await broker.submit(task))

    result = anyio.run(main)
    assert (result.status, result.attempts, model.calls) == (TaskStatus.ERROR, 0, 0)
    assert "skill 'data-clean' needs the input(s) data, schema" in (result.error or "")
