"""Checks without Docker: expression sandboxing, verdict logic, reasons, and the runner's
error handling over an in-memory sandbox."""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from execloop.errors import SandboxClosedError, SandboxStartError, TransferError
from execloop.runtime.bounds import REASON_CHARS
from execloop.runtime.check_dataset import DatasetSummary, dataset_verdict, infer_format
from execloop.runtime.check_expression import evaluate, evaluate_bounded
from execloop.runtime.check_pytest import _CONFTEST, _INI, pytest_in_sandbox, pytest_verdict
from execloop.runtime.check_runner import (
    assertions_verdict,
    exit_status_verdict,
    needs_sandbox,
    reverify,
    run_checks,
    schema_verdict,
    summarize,
)
from execloop.runtime.check_sandbox import REPORT_MARKER, check_script, parse_report
from execloop.runtime.checks import (
    AssertionsCheck,
    CheckOutcome,
    CheckSpec,
    DatasetCheck,
    ExitStatusCheck,
    ExpressionCheck,
    JsonSchemaCheck,
    PytestCheck,
)
from execloop.sandboxes import transfer
from execloop.sandboxes.base import Artifact, ExecResult, ExitReason, Manifest, Sandbox
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.streaming import OnOutput

RESULT = {"loss_initial": 4.2, "loss_final": 3.7, "rows": [1, 2, 3], "meta": {"ok": True}}
OK_RUN = ExecResult(exit_code=0, exit_reason=ExitReason.OK, duration_s=0.1)


def failed_run(stderr: str, reason: ExitReason = ExitReason.ERROR) -> ExecResult:
    code = None if reason in (ExitReason.TIMEOUT, ExitReason.OOM) else 1
    return ExecResult(exit_code=code, exit_reason=reason, stderr=stderr, duration_s=0.1)


class FileSandbox(Sandbox):
    """Serves files from a dict, like the helper does; no code runs."""

    def __init__(self, files: dict[str, bytes] | None = None, *, dead: bool = False) -> None:
        super().__init__(SandboxSpec())
        self.files = dict(files or {})
        self.dead = dead

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._closed = True

    def _alive(self) -> None:
        if self.dead:
            raise SandboxClosedError("the sandbox died earlier (timed out during call #1)")

    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        raise AssertionError("these checks must not run code in the sandbox")

    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        raise AssertionError("these checks must not run code in the sandbox")

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        self._alive()
        transfer.check_archive(archive)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    self.files[posixpath.normpath(posixpath.join(dest, member.name))] = (
                        handle.read()
                    )

    async def download_tar(self, path: str) -> bytes:
        self._alive()
        if path not in self.files:
            raise TransferError(f"FileNotFoundError: {path} does not exist")
        return transfer.tar_from_mapping({path: self.files[path]})

    async def manifest(self, path: str = ".", *, limit: int = 1000) -> Manifest:
        self._alive()
        if path not in self.files:
            raise TransferError(f"FileNotFoundError: {path} does not exist")
        size = len(self.files[path])
        listed = [Artifact(path=path, size_bytes=size, sha256="0" * 64)][:limit]
        return Manifest(files=listed, total_files=1, total_bytes=size)


def result_files(document: object = RESULT) -> dict[str, bytes]:
    return {"result.json": json.dumps(document).encode()}


# -- expressions ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "passed", "reason"),
    [
        ('result["loss_final"] < result["loss_initial"]', True, "true"),
        (
            'result["loss_final"] > result["loss_initial"]',
            False,
            "false: result['loss_final']=3.7, result['loss_initial']=4.2",
        ),
        ('len(result["rows"]) == 3 and result.get("meta")["ok"]', True, "true"),
        ('all(v > 0 for v in result["rows"]) and max(*result["rows"]) == 3', True, "true"),
        ('sorted({k: v for k, v in result.items()})[0] == "loss_final"', True, "true"),
        ("isinstance(result, dict) and round(sum([0.5, 0.25]), 1) == 0.8", True, "true"),
    ],
)
def test_expression_values(expr: str, passed: bool, reason: str) -> None:
    assert evaluate(expr, RESULT) == (passed, reason)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("result['missing'] > 0", "KeyError: 'missing' (result has keys: loss_initial, "),
        ("undefined_name", "NameError: name 'undefined_name' is not defined"),
        ("result[", "refused: Line 1: SyntaxError"),
        ("result['rows'][10]", "IndexError: list index out of range"),
        ("1 / 0", "ZeroDivisionError"),
    ],
)
def test_expression_errors_are_reasons_never_exceptions(expr: str, reason: str) -> None:
    passed, why = evaluate(expr, RESULT)
    assert not passed
    assert why.startswith(reason), why


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("__import__('os').system('id')", 'refused: Line 1: "__import__" is an invalid variable'),
        ("result.__class__.__base__.__subclasses__()", 'refused: Line 1: "__subclasses__" is'),
        ("().__class__", 'refused: Line 1: "__class__" is an invalid attribute name'),
        ("getattr(result, '__class__')", "NameError: name 'getattr' is not defined"),
        ("'{0.__class__}'.format(result)", "NotImplementedError: Using the format*() methods"),
        ("open('/etc/passwd').read()", "NameError: name 'open' is not defined"),
        ("type(result).mro()", "NameError: name 'type' is not defined"),
        ("eval('1')", "refused: Line 1: Eval calls are not allowed."),
        ("[x for x in result.values()][0].__globals__", 'refused: Line 1: "__globals__"'),
        ("(lambda: 0).__code__", 'refused: Line 1: "__code__" is an invalid attribute'),
    ],
)
def test_expression_escapes_are_refused(expr: str, reason: str) -> None:
    passed, why = evaluate(expr, RESULT)
    assert not passed
    assert why.startswith(reason), why


@pytest.mark.anyio
async def test_bounded_expression_passes_and_fails_like_evaluate() -> None:
    document = json.dumps(RESULT).encode()
    assert await evaluate_bounded('result["loss_final"] < 4', document) == (True, "true")
    assert await evaluate_bounded('result["loss_final"] > 4', document) == (
        False,
        "false: result['loss_final']=3.7",
    )
    assert await evaluate_bounded("__import__('os')", document) == (
        False,
        'refused: Line 1: "__import__" is an invalid variable name because it starts with "_"',
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "expr",
    ["[0] * 10**10", "len('x' * result['n'])", "list(range(result['n']))"],
)
async def test_huge_allocations_are_refused_by_the_memory_cap(expr: str) -> None:
    started = time.monotonic()
    passed, reason = await evaluate_bounded(expr, b'{"n": 10000000000}', timeout_s=5)
    assert not passed
    assert reason.startswith("MemoryError"), reason
    assert time.monotonic() - started < 4


@pytest.mark.anyio
@pytest.mark.parametrize("expr", ["10 ** 10 ** 8 > 0", "sum(range(10 ** 12))"])
async def test_endless_expressions_are_stopped_at_the_deadline(expr: str) -> None:
    started = time.monotonic()
    assert await evaluate_bounded(expr, b"{}", timeout_s=1) == (
        False,
        "the expression did not finish within 1 s",
    )
    assert time.monotonic() - started < 5


@pytest.mark.anyio
async def test_bounded_expression_rejects_hostile_documents() -> None:
    passed, reason = await evaluate_bounded("result", b"[" * 200_000)
    assert not passed and reason.startswith("the result is not valid JSON"), reason


# -- exit status and assertions --------------------------------------------------------------
ASSERT_TRACEBACK = """\
Traceback (most recent call last):
  File "/workspace/script.py", line 7, in <module>
    assert rows_out == 10, f"expected 10 rows, got {rows_out}"
           ^^^^^^^^^^^^^^
AssertionError: expected 10 rows, got 3
"""
VALUE_TRACEBACK = """\
Traceback (most recent call last):
  File "/workspace/script.py", line 2, in <module>
    int("x")
ValueError: invalid literal for int() with base 10: 'x'
"""


def test_exit_status_names_the_reason_code_and_last_stderr_line() -> None:
    assert exit_status_verdict(OK_RUN) == (True, "exit status 0")
    assert exit_status_verdict(failed_run(VALUE_TRACEBACK)) == (
        False,
        "the script ended with error (exit status 1): "
        "ValueError: invalid literal for int() with base 10: 'x'",
    )
    timed_out = failed_run("execloop: the sandbox was killed (timeout)", ExitReason.TIMEOUT)
    assert exit_status_verdict(timed_out)[1].startswith(
        "the script ended with timeout (no exit status): execloop: the sandbox was killed"
    )


def test_assertions_take_the_message_and_the_assert_line() -> None:
    assert assertions_verdict(OK_RUN) == (True, "no assertion failed")
    assert assertions_verdict(failed_run(ASSERT_TRACEBACK)) == (
        False,
        'assert rows_out == 10, f"expected 10 rows, got {rows_out}" failed: '
        "expected 10 rows, got 3",
    )
    bare = "Traceback (most recent call last):\n  File 'x', line 1\n    assert x\nAssertionError\n"
    assert assertions_verdict(failed_run(bare)) == (False, "assert x failed")


def test_assertions_fail_when_the_script_did_not_finish() -> None:
    passed, reason = assertions_verdict(failed_run(VALUE_TRACEBACK))
    assert not passed
    assert reason.startswith("the script did not finish (error: ValueError: invalid literal")
    assert reason.endswith("so its assertions did not all run")
    passed, reason = assertions_verdict(failed_run("killed", ExitReason.OOM))
    assert not passed and reason.startswith("the script did not finish (oom: killed)")


# -- JSON Schema -----------------------------------------------------------------------------
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["metrics"],
    "properties": {
        "metrics": {
            "type": "object",
            "properties": {"rows_out": {"type": "integer", "minimum": 0}},
            "required": ["rows_out"],
        },
        "pair": {"prefixItems": [{"type": "string"}, {"type": "number"}]},
    },
}


def test_schema_reason_names_the_json_path() -> None:
    assert schema_verdict(SCHEMA, {"metrics": {"rows_out": 3}}) == (True, "valid")
    assert schema_verdict(SCHEMA, {"metrics": {"rows_out": -1}}) == (
        False,
        "$.metrics.rows_out: -1 is less than the minimum of 0",
    )
    assert schema_verdict(SCHEMA, {}) == (False, "$: 'metrics' is a required property")


def test_schema_defaults_to_draft_2020_12_and_counts_other_errors() -> None:
    passed, reason = schema_verdict(SCHEMA, {"metrics": {"rows_out": "3"}, "pair": [1, "a"]})
    assert not passed
    assert reason.endswith("(+2 more errors)"), reason  # prefixItems is 2020-12 only
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **SCHEMA}
    assert schema_verdict(draft7, {"metrics": {"rows_out": 3}, "pair": [1, "a"]})[0]


def test_an_invalid_schema_fails_the_check_instead_of_raising() -> None:
    passed, reason = schema_verdict({"type": "no-such-type"}, {})
    assert not passed
    assert reason.startswith("the check's own schema is invalid:")


# -- datasets ----------------------------------------------------------------------------------
def summary(**fields: Any) -> DatasetSummary:
    base: dict[str, Any] = {
        "rows": 340,
        "columns": ["id", "text", "label"],
        "n_columns": 3,
        "present": ["id", "label", "text"],
    }
    return DatasetSummary.model_validate(base | fields)


def test_dataset_verdict_duplicates_and_imbalance() -> None:
    spec = DatasetCheck(path="d.jsonl", unique_by=("id",), label_column="label", max_imbalance=3)
    facts = summary(duplicates=3, labels=[("a", 300), ("b", 40)], n_classes=2)
    assert dataset_verdict(spec, facts) == (
        False,
        "3 duplicate rows by (id); imbalance 7.5 > 3.0 (a: 300, b: 40)",
    )
    balanced = summary(duplicates=0, labels=[("a", 180), ("b", 160)], n_classes=2)
    assert dataset_verdict(spec, balanced) == (
        True,
        "340 rows, 3 columns; no duplicate rows by (id); imbalance 1.1 ≤ 3.0 (a: 180, b: 160)",
    )


@pytest.mark.parametrize(
    ("spec_fields", "facts", "reason"),
    [
        (
            {"required_columns": ("id", "answer")},
            {},
            "missing columns: answer (has: id, text, label)",
        ),
        ({"min_rows": 1000}, {}, "only 340 rows (min_rows 1000)"),
        ({"unique_by": ()}, {"duplicates": 2}, "2 duplicate rows"),
        ({"unique_by": ("uid",)}, {}, "unique_by columns missing: uid"),
        (
            {"label_column": "label", "max_imbalance": 2},
            {"labels": [("a", 340)], "n_classes": 1},
            "only one class in label (a: 340)",
        ),
        ({"label_column": "y"}, {}, "label column 'y' missing"),
    ],
)
def test_dataset_verdict_problems(
    spec_fields: dict[str, Any], facts: dict[str, Any], reason: str
) -> None:
    spec = DatasetCheck(path="d.csv", **spec_fields)
    assert dataset_verdict(spec, summary(**facts)) == (False, reason)


@pytest.mark.parametrize(
    ("path", "declared", "expected"),
    [
        ("out/train.jsonl", None, "jsonl"),
        ("data.ndjson", None, "jsonl"),
        ("data.CSV", None, "csv"),
        ("data.csv.gz", None, "csv"),
        ("part-0.parquet", None, "parquet"),
        ("data.txt", None, None),
        ("data.txt", "csv", "csv"),
    ],
)
def test_dataset_format_is_inferred_from_the_extension(
    path: str, declared: Any, expected: str | None
) -> None:
    assert infer_format(path, declared) == expected


# -- pytest reports ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("report", "passed", "reason"),
    [
        ({"exit_code": 0, "tests": 3}, True, "3 tests passed"),
        (
            {
                "exit_code": 1,
                "tests": 3,
                "n_failed": 2,
                "failed": [
                    {"test": "test_rows", "message": "assert 2 == 3\n +  where 2 = len(rows)"},
                    {"test": "test_keys", "message": "KeyError: 'x'"},
                ],
            },
            False,
            "2 of 3 tests failed: test_rows (assert 2 == 3); test_keys (KeyError: 'x')",
        ),
        ({"exit_code": 5, "tests": 0}, False, "no tests collected from checks/test_out.py"),
        ({"exit_code": 0, "tests": 2, "skipped": 2}, False, "2 of 2 tests skipped; check tests"),
        ({"timed_out": True}, False, "pytest checks/test_out.py did not finish within 30 s"),
        (
            {"exit_code": 4, "tail": "ERROR: usage: bad option\n"},
            False,
            "pytest exited with status 4: ERROR: usage: bad option",
        ),
        ({"error": "No module named pytest"}, False, "pytest could not run checks/test_out.py"),
        ({"tests": "many"}, False, "malformed pytest report from the sandbox"),
    ],
)
def test_pytest_verdict(report: dict[str, Any], passed: bool, reason: str) -> None:
    verdict = pytest_verdict(report, file="checks/test_out.py", timeout_s=30)
    assert verdict[0] is passed
    assert verdict[1].startswith(reason), verdict[1]


def test_pytest_runner_ignores_the_agents_pytest_configuration(tmp_path: Path) -> None:
    """The in-sandbox runner, run here by the host's pytest, as the helper would run it."""
    folder = tmp_path / ".execloop-checks-0123"
    folder.mkdir()
    (folder / "pytest.ini").write_text(_INI)
    (folder / "conftest.py").write_text(_CONFTEST)
    (folder / "test_out.py").write_text(
        "import json, agent_module\n"
        "def test_count():\n    assert json.load(open('result.json'))['n'] == 3\n"
        "def test_module():\n    assert agent_module.X == 1\n"
    )
    (folder / "run.py").write_text(check_script(pytest_in_sandbox))
    (tmp_path / "result.json").write_text('{"n": 2}')
    (tmp_path / "agent_module.py").write_text("X = 1\n")
    # what an agent would plant to make every test pass or be skipped
    (tmp_path / "conftest.py").write_text("import pytest\npytest.skip(allow_module_level=True)\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --collect-only\n")
    (tmp_path / "test_out.py").write_text("def test_count():\n    pass\n")
    digest = hashlib.sha256((folder / "test_out.py").read_bytes()).hexdigest()
    params = json.dumps({"file": "test_out.py", "args": [], "timeout": 60, "sha256": digest})
    namespace = run_like_the_helper(folder / "run.py", params, tmp_path)
    assert not folder.exists()
    assert [name for name in namespace if not name.startswith("__")] == []
    report = json.loads(namespace["__stdout__"].split(REPORT_MARKER)[-1])
    assert pytest_verdict(report, file="test_out.py", timeout_s=60) == (
        False,
        "1 of 2 tests failed: test_count (assert 2 == 3)",
    )


def run_like_the_helper(path: Path, arg: str, cwd: Path) -> dict[str, Any]:
    """exec the file as ``__main__`` with ``__file__`` and argv set, capturing stdout."""
    import contextlib

    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    out = io.StringIO()
    try:
        sys.argv = [str(path), arg]
        os.chdir(cwd)
        with contextlib.redirect_stdout(out):
            exec(compile(path.read_text(), str(path), "exec"), namespace)
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    namespace.pop("__builtins__", None)
    namespace["__stdout__"] = out.getvalue()
    return namespace


# -- the runner --------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_run_checks_reads_outputs_and_judges_each_kind() -> None:
    checks: list[CheckSpec] = [
        ExitStatusCheck(),
        AssertionsCheck(),
        JsonSchemaCheck.model_validate({"schema": {"required": ["loss_final"]}}),
        ExpressionCheck(expr='result["loss_final"] < result["loss_initial"]'),
        ExpressionCheck(name="rows", expr='len(result["rows"]) > 5'),
    ]
    outcomes = await run_checks(
        checks, sandbox=FileSandbox(result_files()), run=OK_RUN, check_files_root=None
    )
    assert [(o.name, o.kind, o.passed) for o in outcomes] == [
        ("exit status", "exit_status", True),
        ("script assertions", "assertions", True),
        ("result.json matches its schema", "json_schema", True),
        ('result["loss_final"] < result["loss_initial"]', "expression", True),
        ("rows", "expression", False),
    ]
    assert outcomes[-1].reason == "false: result['rows']=[1, 2, 3]"


@pytest.mark.anyio
async def test_missing_and_invalid_outputs_fail_with_clear_reasons() -> None:
    sandbox = FileSandbox({"bad.json": b"{not json"})
    checks: list[CheckSpec] = [
        ExpressionCheck(expr="result", path="result.json"),
        JsonSchemaCheck.model_validate({"path": "bad.json", "schema": {}}),
    ]
    missing, invalid = await run_checks(checks, sandbox=sandbox, run=OK_RUN, check_files_root=None)
    assert missing.reason == "result.json is missing: FileNotFoundError: result.json does not exist"
    assert invalid.reason.startswith("bad.json is not valid JSON: Expecting property name")


@pytest.mark.anyio
async def test_a_dead_sandbox_fails_each_check_that_needs_it_and_says_so() -> None:
    run = failed_run("execloop: the sandbox was killed (timeout)", ExitReason.TIMEOUT)
    checks: list[CheckSpec] = [
        ExitStatusCheck(),
        JsonSchemaCheck.model_validate({"schema": {}}),
        ExpressionCheck(expr="True"),
        DatasetCheck(path="d.csv"),
    ]
    outcomes = await run_checks(
        checks, sandbox=FileSandbox(dead=True), run=run, check_files_root=None
    )
    assert [o.passed for o in outcomes] == [False] * 4
    assert outcomes[0].reason.startswith("the script ended with timeout")
    for outcome in outcomes[1:]:
        assert outcome.reason.startswith("the sandbox is dead, so this check could not run:")
        assert "timed out during call #1" in outcome.reason


@pytest.mark.anyio
async def test_pytest_file_problems_on_the_host_are_reasons(tmp_path: Path) -> None:
    (tmp_path / "skill").mkdir()
    (tmp_path / "secret_test.py").write_text("")
    checks: list[CheckSpec] = [
        PytestCheck(file="checks/test_missing.py"),
        PytestCheck(file="../secret_test.py"),
        PytestCheck(file="conftest.py"),
    ]
    sandbox = FileSandbox()
    without_root = await run_checks(checks[:1], sandbox=sandbox, run=OK_RUN, check_files_root=None)
    assert without_root[0].reason == (
        "no check files root was given, so checks/test_missing.py cannot be found"
    )
    reasons = [
        o.reason
        for o in await run_checks(
            checks, sandbox=sandbox, run=OK_RUN, check_files_root=tmp_path / "skill"
        )
    ]
    assert reasons[0].startswith("cannot read checks/test_missing.py on the host: [Errno 2]")
    assert reasons[1].startswith("../secret_test.py is outside the check files root")
    assert reasons[2] == "a pytest check file cannot be named conftest.py"


@pytest.mark.anyio
async def test_reasons_are_bounded_to_300_characters() -> None:
    huge = "Traceback (most recent call last):\n  File 'x'\n    assert ok\nAssertionError: "
    run = failed_run(huge + "why " * 500)
    long_key = {"k" * 1000: 1}
    checks: list[CheckSpec] = [
        AssertionsCheck(),
        ExitStatusCheck(),
        ExpressionCheck(expr="result['x']"),
        JsonSchemaCheck.model_validate({"schema": {"type": "array"}}),
    ]
    outcomes = await run_checks(
        checks, sandbox=FileSandbox(result_files(long_key)), run=run, check_files_root=None
    )
    assert [o.passed for o in outcomes] == [False] * 4
    for outcome in outcomes:
        assert len(outcome.reason) <= REASON_CHARS
        assert outcome.reason.endswith("…"), outcome.reason


class _Made(list[FileSandbox]):
    """A sandbox factory that keeps every sandbox it made."""

    def __call__(self) -> Sandbox:
        self.append(FileSandbox())
        return self[-1]


def _kept_folders(tmp_path: Path) -> tuple[Path, Path]:
    """The outputs a script left (its own data/a.csv and limits.json) and the original inputs."""
    outputs, inputs = tmp_path / "outputs", tmp_path / "inputs"
    (outputs / "data").mkdir(parents=True)
    (inputs / "data").mkdir(parents=True)
    (outputs / "result.json").write_bytes(result_files()["result.json"])
    (outputs / "data" / "a.csv").write_text("overwritten by the script")
    (inputs / "data" / "a.csv").write_text("the original")
    (outputs / "limits.json").write_text('{"max": 50}')
    (inputs / "limits.json").write_text('{"max": 5}')
    return outputs, inputs


@pytest.mark.anyio
async def test_reverify_restores_host_folders_in_order_into_a_fresh_sandbox(
    tmp_path: Path,
) -> None:
    made = _Made()
    outputs, inputs = _kept_folders(tmp_path)
    checks: list[CheckSpec] = [
        ExpressionCheck(expr='result["loss_final"] < 4'),
        PytestCheck(file="checks/test_x.py"),  # runs code: it needs the fresh sandbox
    ]
    outcomes = await reverify(
        checks,
        sandbox_factory=made,
        restore=[outputs, inputs],
        run=OK_RUN,
        check_files_root=None,
    )
    assert [o.passed for o in outcomes] == [True, False]
    assert "no check files root" in outcomes[1].reason
    assert len(made) == 1 and made[0].closed
    assert made[0].files["data/a.csv"] == b"the original"  # later folders win


@pytest.mark.anyio
async def test_reverify_starts_no_sandbox_when_every_check_is_judged_on_the_host(
    tmp_path: Path,
) -> None:
    """Exit status, assertions, schemas and expressions read the host copies: the same
    verdicts, later folders winning, with no sandbox started."""
    made = _Made()
    outputs, inputs = _kept_folders(tmp_path)
    checks: list[CheckSpec] = [
        ExitStatusCheck(),
        ExpressionCheck(expr='result["loss_final"] < 4'),
        JsonSchemaCheck.model_validate(
            {"path": "limits.json", "schema": {"properties": {"max": {"maximum": 10}}}}
        ),
    ]
    outcomes = await reverify(
        checks,
        sandbox_factory=made,
        restore=[outputs, inputs],
        run=OK_RUN,
        check_files_root=None,
    )
    assert [o.passed for o in outcomes] == [True, True, True]  # limits.json: the original
    flipped = await reverify(
        checks,
        sandbox_factory=made,
        restore=[inputs, outputs],
        run=OK_RUN,
        check_files_root=None,
    )
    assert [o.passed for o in flipped] == [True, True, False]  # the script's own limits.json
    assert made == []
    assert not needs_sandbox(checks)
    assert needs_sandbox([*checks, DatasetCheck(path="d.csv")])


@pytest.mark.anyio
async def test_reverify_fails_every_check_when_the_fresh_sandbox_does_not_start() -> None:
    class Broken(FileSandbox):
        async def start(self) -> None:
            raise SandboxStartError("no capacity")

    checks: list[CheckSpec] = [ExitStatusCheck(), PytestCheck(file="checks/test_x.py")]
    outcomes = await reverify(
        checks, sandbox_factory=Broken, restore=[], run=OK_RUN, check_files_root=None
    )
    assert [o.reason for o in outcomes] == [
        "the fresh sandbox for re-verification failed: no capacity"
    ] * 2


def test_summarize() -> None:
    ok = CheckOutcome(name="exit status", kind="exit_status", passed=True)
    bad = CheckOutcome(name="out.json matches its schema", kind="json_schema", passed=False)
    assert summarize([]) == "no checks"
    assert summarize([ok, ok]) == "2/2 checks passed"
    assert summarize(
        [ok, bad.model_copy(update={"reason": "$.n: 'x' is not of type 'integer'"})]
    ) == (
        "1/2 checks passed; failed: out.json matches its schema: $.n: 'x' is not of type 'integer'"
    )


def test_a_check_script_without_a_report_explains_why() -> None:
    run = ExecResult(
        exit_code=1,
        exit_reason=ExitReason.ERROR,
        stdout=f"noise\n{REPORT_MARKER}{{truncated",
        stderr="Traceback (most recent call last):\nModuleNotFoundError: No module named 'pandas'",
        duration_s=0.1,
    )
    assert parse_report(run) == {
        "error": "the check script in the sandbox ended (error) without a readable report: "
        "ModuleNotFoundError: No module named 'pandas'"
    }
    ok = run.model_copy(update={"stdout": f'x\n{REPORT_MARKER}{{"rows": 3}}\n'})
    assert parse_report(ok) == {"rows": 3}
