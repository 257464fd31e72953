"""The Result's JSON form is a contract with orchestrators: its keys are pinned here."""

from __future__ import annotations

import json

from execloop.runtime.checks import CheckOutcome
from execloop.runtime.classic import CallTrace, estimate_classic
from execloop.runtime.ledger import Usage
from execloop.runtime.task import AttemptRecord, Result, TaskStatus
from execloop.sandboxes.base import Artifact, ExitReason


def _result() -> Result:
    return Result(
        task_id="t1",
        status=TaskStatus.PASSED,
        answer='{"total": 10}',
        checks=[CheckOutcome(name="exit status", kind="exit_status", passed=True)],
        artifacts=[Artifact(path="result.json", size_bytes=13, sha256="0" * 64)],
        artifacts_total_files=1201,
        artifacts_total_bytes=1_300_000,
        attempts=1,
        attempt_log=[AttemptRecord(number=1, exit_reason=ExitReason.OK, exit_code=0)],
        usage=Usage(input_tokens=10, output_tokens=5, requests=1),
        usage_classic_estimate=estimate_classic(
            system="s", user="u", calls=[CallTrace(tool="t", arguments="{}", result="1")]
        ),
        model="scripted:x",
        scripted=True,
        tokenizer="o200k_base (bpe-openai)",
    )


def test_result_json_keys_are_pinned() -> None:
    data = json.loads(_result().model_dump_json())
    assert list(data) == [
        "task_id",
        "status",
        "answer",
        "checks",
        "artifacts",
        "artifacts_total_files",
        "artifacts_total_bytes",
        "attempts",
        "attempt_log",
        "usage",
        "usage_classic_estimate",
        "timings",
        "model",
        "scripted",
        "tokenizer",
        "error",
        "error_kind",
    ]
    assert data["status"] == "passed"
    assert (data["artifacts_total_files"], data["artifacts_total_bytes"]) == (1201, 1_300_000)
    assert list(data["checks"][0]) == ["name", "kind", "passed", "reason"]
    assert list(data["artifacts"][0]) == ["path", "size_bytes", "sha256"]
    assert list(data["usage"]) == [
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "requests",
    ]
    assert list(data["timings"]) == ["total_s", "model_s", "sandbox_s", "checks_s"]
    assert list(data["attempt_log"][0]) == [
        "number",
        "exit_reason",
        "exit_code",
        "checks_passed",
        "checks_total",
        "failed_checks",
        "usage",
        "prompt_tokens",
        "script_chars",
        "duration_s",
    ]
    assert {"sequential", "parallel", "tokenizer"} <= set(data["usage_classic_estimate"])


def test_result_round_trips_through_json() -> None:
    result = _result()
    assert Result.model_validate_json(result.model_dump_json()) == result
