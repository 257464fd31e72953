"""Bounded memory and the compact report: what the model sees does not grow with attempts."""

from __future__ import annotations

from execloop.runtime import bounds
from execloop.runtime.checks import CheckOutcome
from execloop.runtime.models.base import ModelReply
from execloop.runtime.prompts import (
    CORRECTION,
    AttemptMemory,
    extract_script,
    failure_report,
)
from execloop.runtime.tokens import count_tokens
from execloop.sandboxes.base import ExecResult, ExitReason


def _run(stderr: str = "", stdout: str = "") -> ExecResult:
    return ExecResult(
        exit_code=1, exit_reason=ExitReason.ERROR, stderr=stderr, stdout=stdout, duration_s=0.5
    )


def _failed(name: str) -> CheckOutcome:
    return CheckOutcome(name=name, kind="expression", passed=False, reason="was False")


def test_memory_stays_bounded_over_many_attempts() -> None:
    memory = AttemptMemory()
    sizes = {}
    for attempt in range(1, 41):
        memory.record(
            script=f"# attempt {attempt}\n" + "x = 1\n" * 50,
            report=failure_report(
                _run(stderr="Traceback...\nValueError: bad\n" * 3), [_failed("c")]
            ),
            one_line=f"attempt {attempt}: exit error; failed: rows_out > 0, dataset clean.jsonl",
        )
        sizes[attempt + 1] = count_tokens(memory.render(attempt + 1))
    # the summary of older attempts grows until its token cap, then the prompt stops growing
    assert sizes[41] - sizes[4] <= bounds.SUMMARY_TOKENS
    assert max(sizes[n] for n in range(20, 42)) - min(sizes[n] for n in range(20, 42)) <= 5
    assert "earlier attempts omitted" in memory.render(41)


def test_report_is_bounded_and_names_failed_checks() -> None:
    report = failure_report(
        _run(stderr="E" * 100_000, stdout="O" * 100_000), [_failed("a"), _failed("b")]
    )
    assert "FAILED a: was False" in report and "FAILED b" in report
    assert "Checks: 0/2 passed." in report
    assert len(report) < bounds.STDERR_TAIL_CHARS + bounds.STDOUT_TAIL_CHARS + 400
    assert "characters omitted" in report
    assert failure_report(None, []) == CORRECTION


def test_script_comes_from_the_tool_call_or_a_fenced_block() -> None:
    assert extract_script(ModelReply(model="m", script="print(1)")) == "print(1)"
    fenced = ModelReply(model="m", text="Here:\n```python\nprint(2)\n```\nDone.")
    assert extract_script(fenced) == "print(2)\n"
    assert extract_script(ModelReply(model="m", text="I think we should...")) is None
    assert extract_script(ModelReply(model="m", script="   ")) is None


def test_bounds_cut_in_one_place_with_a_marker() -> None:
    text = "a" * 1000 + "TAIL"
    assert bounds.tail(text, 100).endswith("TAIL") and len(bounds.tail(text, 100)) <= 100
    assert bounds.head(text, 100).startswith("aaa") and len(bounds.head(text, 100)) <= 100
    cut = bounds.middle("H" * 500 + "T" * 500, 120)
    assert cut.startswith("H") and cut.endswith("T") and len(cut) <= 120
    assert bounds.middle("short", 100) == "short"
