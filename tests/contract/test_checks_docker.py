"""Every check kind on real Docker: good outputs pass, bad ones fail with a useful reason, the
agent cannot swap the host's pytest file, and ``reverify`` judges outputs in a fresh sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from execloop import DockerSandbox, ExecResult, ExitReason, Sandbox, SandboxSpec
from execloop.runtime.check_runner import reverify, run_checks, summarize
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

pytestmark = pytest.mark.anyio

HOST_TESTS = """\
import json


def test_rows_out():
    assert json.load(open("result.json"))["rows_out"] == 3


def test_dataset_written():
    with open("data/train.jsonl") as handle:
        assert sum(1 for _ in handle) == 3
"""
SCHEMA = {
    "type": "object",
    "required": ["rows_out", "loss_initial", "loss_final"],
    "properties": {
        "rows_out": {"type": "integer", "minimum": 0},
        "loss_initial": {"type": "number"},
        "loss_final": {"type": "number"},
    },
}


def dataset(path: str) -> DatasetCheck:
    return DatasetCheck(
        path=path,
        required_columns=("id", "text", "label"),
        unique_by=("id",),
        label_column="label",
        max_imbalance=3,
    )


CHECKS: list[CheckSpec] = [
    ExitStatusCheck(),
    AssertionsCheck(),
    PytestCheck(file="checks/test_output.py"),
    JsonSchemaCheck.model_validate({"schema": SCHEMA}),
    ExpressionCheck(expr='result["loss_final"] < result["loss_initial"]'),
    dataset("data/train.jsonl"),
    dataset("data/train.csv"),
    dataset("data/train.parquet"),
]

GOOD_SCRIPT = """\
import json, os
import pandas as pd

os.makedirs("data", exist_ok=True)
frame = pd.DataFrame(
    {"id": [1, 2, 3], "text": ["a b", "c d", "e f"], "label": ["pos", "neg", "pos"]}
)
frame.to_json("data/train.jsonl", orient="records", lines=True)
frame.to_csv("data/train.csv", index=False)
frame.to_parquet("data/train.parquet")
result = {"rows_out": len(frame), "loss_initial": 4.2, "loss_final": 3.7}
with open("result.json", "w") as handle:
    json.dump(result, handle)
assert result["rows_out"] == 3, "wrong row count"
"""
BAD_SCRIPT = """\
import json, os
import pandas as pd

os.makedirs("data", exist_ok=True)
frame = pd.DataFrame(
    {"id": [1, 1, 2, 2, 3], "text": list("abcde"), "label": ["pos"] * 4 + ["neg"]}
)
frame.to_json("data/train.jsonl", orient="records", lines=True)
frame.drop(columns=["label"]).to_csv("data/train.csv", index=False)
with open("data/train.parquet", "wb") as handle:
    handle.write(b"not parquet")
result = {"rows_out": -1, "loss_initial": 4.2, "loss_final": 5.0}
with open("result.json", "w") as handle:
    json.dump(result, handle)
rows_out = result["rows_out"]
assert rows_out > 0, "no rows"
"""
# The agent tries to make the pytest check pass whatever its outputs: it deletes test files,
# plants its own test files, conftest.py, pytest.ini and a pytest.py, and sets PYTEST_ADDOPTS.
TAMPERING = """
import glob, os
for path in glob.glob("**/test_*.py", recursive=True) + glob.glob(".execloop-checks-*/*"):
    os.remove(path)
os.makedirs("checks", exist_ok=True)
for fake in ("test_output.py", "checks/test_output.py"):
    with open(fake, "w") as handle:
        handle.write("def test_rows_out():\\n    pass\\n")
with open("conftest.py", "w") as handle:
    handle.write("def pytest_collection_modifyitems(items):\\n    items.clear()\\n")
with open("pytest.ini", "w") as handle:
    handle.write("[pytest]\\naddopts = -p no:junitxml\\n")
with open("pytest.py", "w") as handle:
    handle.write("raise SystemExit(0)\\n")
os.environ["PYTEST_ADDOPTS"] = "--collect-only"
"""
# A thread left behind that rewrites every check test it sees into one that passes.
LURKER = """
import glob, threading, time
def _lurk():
    while True:
        for path in glob.glob(".execloop-checks-*/test_*.py"):
            try:
                with open(path, "w") as handle:
                    handle.write("def test_fine():\\n    pass\\n")
            except OSError:
                pass
        time.sleep(0.001)
threading.Thread(target=_lurk, daemon=True).start()
"""


@pytest.fixture
def check_root(tmp_path: Path) -> Path:
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_output.py").write_text(HOST_TESTS)
    return tmp_path


async def run_script(sandbox: Sandbox, script: str) -> ExecResult:
    await sandbox.upload({"script.py": script})
    return await sandbox.exec_file("script.py")


def by_name(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    return {outcome.name: outcome for outcome in outcomes}


async def workspace_files(sandbox: Sandbox, folder: Path) -> Path:
    """The agent's outputs as the loop keeps them: the workspace copied into a host folder."""
    await sandbox.download(".", folder)
    return folder


async def test_every_check_passes_on_good_outputs_and_leaves_no_trace(check_root: Path) -> None:
    async with DockerSandbox() as sandbox:
        run = await run_script(sandbox, GOOD_SCRIPT)
        names = "print(sorted(n for n in globals() if not n.startswith('_')))"
        before = await sandbox.exec(names)
        outcomes = await run_checks(CHECKS, sandbox=sandbox, run=run, check_files_root=check_root)
        after = await sandbox.exec(names)
        left = [a.path for a in await sandbox.artifacts()]
    assert run.exit_reason is ExitReason.OK, run.stderr
    assert all(o.passed for o in outcomes), summarize(outcomes)
    reasons = by_name(outcomes)
    assert reasons["pytest checks/test_output.py"].reason == "2 tests passed"
    assert reasons["dataset data/train.parquet"].reason == (
        "3 rows, 3 columns; no duplicate rows by (id); imbalance 2.0 ≤ 3.0 (pos: 2, neg: 1)"
    )
    assert before.stdout == after.stdout  # the checks' scripts added nothing to the session
    assert sorted(left) == [
        "data/train.csv",
        "data/train.jsonl",
        "data/train.parquet",
        "result.json",
        "script.py",
    ]


async def test_every_check_fails_on_bad_outputs_with_a_useful_reason(check_root: Path) -> None:
    async with DockerSandbox() as sandbox:
        run = await run_script(sandbox, BAD_SCRIPT)
        outcomes = await run_checks(CHECKS, sandbox=sandbox, run=run, check_files_root=check_root)
    assert not any(o.passed for o in outcomes), summarize(outcomes)
    reasons = {name: outcome.reason for name, outcome in by_name(outcomes).items()}
    assert reasons == {
        "exit status": "the script ended with error (exit status 1): AssertionError: no rows",
        "script assertions": 'assert rows_out > 0, "no rows" failed: no rows',
        "pytest checks/test_output.py": "2 of 2 tests failed: test_rows_out (assert -1 == 3); "
        "test_dataset_written (assert 5 == 3)",
        "result.json matches its schema": "$.rows_out: -1 is less than the minimum of 0",
        'result["loss_final"] < result["loss_initial"]': "false: result['loss_final']=5.0, "
        "result['loss_initial']=4.2",
        "dataset data/train.jsonl": "2 duplicate rows by (id); imbalance 4.0 > 3.0 "
        "(pos: 4, neg: 1)",
        "dataset data/train.csv": "missing columns: label (has: id, text); "
        "2 duplicate rows by (id); label column 'label' missing",
        "dataset data/train.parquet": reasons["dataset data/train.parquet"],
    }
    assert reasons["dataset data/train.parquet"].startswith(
        "cannot read data/train.parquet as parquet: ArrowInvalid:"
    )


@pytest.mark.parametrize(("rows_out", "passed"), [(3, True), (2, False)])
async def test_pytest_verdict_comes_from_the_host_file_whatever_the_agent_plants(
    check_root: Path, rows_out: int, passed: bool
) -> None:
    script = GOOD_SCRIPT.replace('"rows_out": len(frame)', f'"rows_out": {rows_out}')
    script = script.replace('assert result["rows_out"] == 3, "wrong row count"', TAMPERING)
    checks: list[CheckSpec] = [PytestCheck(file="checks/test_output.py")]
    async with DockerSandbox() as sandbox:
        run = await run_script(sandbox, script)
        assert run.exit_reason is ExitReason.OK, run.stderr
        (outcome,) = await run_checks(checks, sandbox=sandbox, run=run, check_files_root=check_root)
    assert outcome.passed is passed
    assert outcome.reason == (
        "2 tests passed" if passed else "1 of 2 tests failed: test_rows_out (assert 2 == 3)"
    )


async def test_the_host_file_is_read_fresh_at_every_check(check_root: Path) -> None:
    checks: list[CheckSpec] = [PytestCheck(file="checks/test_output.py")]
    async with DockerSandbox() as sandbox:
        run = await run_script(sandbox, GOOD_SCRIPT)
        first = await run_checks(checks, sandbox=sandbox, run=run, check_files_root=check_root)
        (check_root / "checks" / "test_output.py").write_text(
            HOST_TESTS.replace('["rows_out"] == 3', '["rows_out"] == 4')
        )
        second = await run_checks(checks, sandbox=sandbox, run=run, check_files_root=check_root)
    assert first[0].passed
    assert second[0].reason == "1 of 2 tests failed: test_rows_out (assert 3 == 4)"


async def test_after_a_timeout_each_check_says_the_sandbox_is_dead(check_root: Path) -> None:
    async with DockerSandbox(SandboxSpec(timeout_s=1)) as sandbox:
        run = await run_script(sandbox, "while True:\n    pass\n")
        outcomes = await run_checks(CHECKS, sandbox=sandbox, run=run, check_files_root=check_root)
    assert run.exit_reason is ExitReason.TIMEOUT
    reasons = [o.reason for o in outcomes]
    assert reasons[0].startswith("the script ended with timeout (no exit status)")
    assert reasons[1].startswith("the script did not finish (timeout:")
    for reason in reasons[2:]:
        assert reason.startswith("the sandbox is dead, so this check could not run:"), reason


async def test_reverify_passes_good_outputs_and_fails_tampered_ones(
    check_root: Path, tmp_path: Path
) -> None:
    async with DockerSandbox() as sandbox:
        run = await run_script(sandbox, GOOD_SCRIPT)
        outputs = await workspace_files(sandbox, tmp_path / "outputs")
    fresh = await reverify(
        CHECKS,
        sandbox_factory=DockerSandbox,
        restore=[outputs],
        run=run,
        check_files_root=check_root,
    )
    assert all(o.passed for o in fresh), summarize(fresh)

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "result.json").write_bytes(b'{"rows_out": 3, "loss_initial": 1, "loss_final": 2}')
    outcomes = await reverify(
        CHECKS,
        sandbox_factory=DockerSandbox,
        restore=[outputs, tampered],
        run=run,
        check_files_root=check_root,
    )
    failed = {o.name: o.reason for o in outcomes if not o.passed}
    assert failed == {
        'result["loss_final"] < result["loss_initial"]': "false: result['loss_final']=2, "
        "result['loss_initial']=1"
    }


async def test_reverify_is_immune_to_a_thread_left_in_the_agents_session(
    check_root: Path, tmp_path: Path
) -> None:
    script = GOOD_SCRIPT.replace('"rows_out": len(frame)', '"rows_out": 2')
    script = script.replace('assert result["rows_out"] == 3, "wrong row count"', LURKER)
    checks: list[CheckSpec] = [PytestCheck(file="checks/test_output.py")]
    async with DockerSandbox() as sandbox:
        run = await run_script(sandbox, script)
        assert run.exit_reason is ExitReason.OK, run.stderr
        # In its own session the thread races the check: whether it rewrote the file (seen by
        # the hash) or not (the host's test fails), the check fails, but its reason varies.
        (in_session,) = await run_checks(
            checks, sandbox=sandbox, run=run, check_files_root=check_root
        )
        outputs = await workspace_files(sandbox, tmp_path / "outputs")
    (outcome,) = await reverify(
        checks,
        sandbox_factory=DockerSandbox,
        restore=[outputs],
        run=run,
        check_files_root=check_root,
    )
    assert not in_session.passed
    assert outcome.reason == "1 of 2 tests failed: test_rows_out (assert 2 == 3)"
