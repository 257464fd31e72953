"""The report's sentences: how a task ended, and why code mode cost less or more than the classic
flow, with the figure's method (estimated, replayed, measured live) said where it matters."""

from __future__ import annotations

from datetime import UTC, datetime

from execloop.runtime.checks import CheckOutcome
from execloop.runtime.classic import CallTrace, estimate_classic
from execloop.runtime.ledger import Usage
from execloop.runtime.report_model import FlowTokens, Method, TaskSummary, UnfinishedTask
from execloop.runtime.report_text import how_obtained, task_sentence, unfinished_sentence
from execloop.runtime.task import TaskStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _task(calls: int, usage: Usage, **extra: object) -> TaskSummary:
    traces = [
        CallTrace(tool="lookup", arguments=f'{{"n": {i}}}', result="x " * 50) for i in range(calls)
    ]
    fields: dict[str, object] = {
        "task_id": "t",
        "status": TaskStatus.PASSED,
        "attempts": 1,
        "usage": usage,
        "classic": estimate_classic(
            system="rules " * 100, user="goal", calls=traces, final_answer="ok"
        ),
        "started_at": T0,
        "ended_at": T0,
        "goal": "Sum   the\nvalues.",
        "checks": [CheckOutcome(name="exit status", kind="exit_status", passed=True)],
    }
    return TaskSummary.model_validate({**fields, **extra})


def test_a_task_with_calls_says_what_was_avoided() -> None:
    task = _task(12, Usage(input_tokens=300, output_tokens=60))
    classic = task.classic.sequential.uncached.total_input_tokens  # type: ignore[union-attr]
    text = task_sentence(task)
    assert text.startswith(
        "**t** was asked to “Sum the values”. It passed all 1 check in 1 attempt."
    )
    assert f"the classic flow would have read {classic:,} (estimated)" in text
    assert "made its 12 tool calls itself: no model turn per call" in text


def test_without_calls_code_mode_costs_more_and_the_sentence_says_why() -> None:
    estimate = _task(0, Usage()).classic
    assert estimate is not None
    prompt = estimate.sequential.uncached.total_input_tokens
    again = _task(0, Usage(input_tokens=2 * prompt + 40, output_tokens=900), attempts=2)
    text = task_sentence(again)
    assert "It made no tool calls, so code mode had nothing to save" in text
    assert f"code mode read {2 * prompt + 40:,} input tokens, the classic flow {prompt:,}" in text
    assert "as each of its 2 attempts re-sent the prompt" in text
    assert (
        "code mode wrote a 900-token script where a classic agent writes only its 1-token" in text
    )


def test_many_attempts_can_outweigh_the_calls_saved() -> None:
    task = _task(1, Usage(input_tokens=50_000), attempts=9)
    assert "more than the classic flow's" in task_sentence(task)
    assert "its 9 attempts each re-sent the prompt" in task_sentence(task)


def test_a_failed_task_names_its_failed_checks() -> None:
    checks = [
        CheckOutcome(name="exit status", kind="exit_status", passed=True),
        CheckOutcome(name="rows == 3", kind="expression", passed=False, reason="false"),
    ]
    task = _task(2, Usage(input_tokens=900), status=TaskStatus.FAILED, attempts=5, checks=checks)
    assert "It failed after 5 attempts, failing rows == 3 (1 of 2 checks passed)." in (
        task_sentence(task)
    )


def test_a_measured_classic_run_replaces_the_estimate_and_is_named() -> None:
    measured = FlowTokens(
        method=Method.REPLAYED,
        counted_by="o200k_base (bpe-openai)",
        usage=Usage(input_tokens=7_000, output_tokens=300),
        request_input_tokens=(1_000, 2_500, 3_500),
        tool_rounds=2,
    )
    task = _task(2, Usage(input_tokens=700), classic_measured=measured)
    assert task.classic_figures == measured
    assert "the classic flow read 7,000 (replayed), 10.0x as many" in task_sentence(task)
    assert how_obtained(measured) == "replayed, counted by o200k_base (bpe-openai)"
    code = _task(0, Usage(input_tokens=1), scripted=True).code_figures
    assert code.method is Method.REPLAYED


def test_an_unfinished_task_is_marked() -> None:
    text = unfinished_sentence(UnfinishedTask(task_id="u", goal="Do it.", state="running"))
    assert text == (
        "**u** was asked to “Do it”. **Unfinished** (running when this report was written): it "
        "has no result yet and no figures."
    )
