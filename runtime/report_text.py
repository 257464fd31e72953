"""The report's words: one sentence per task (what was asked, how it ended, what it cost against
the classic flow and why), and the definitions every table refers to, each said once.

Only plain numbers go in: every figure is taken from a ``TaskSummary`` and its ``FlowTokens``,
so a sentence cannot disagree with the tables beside it.
"""

from __future__ import annotations

from execloop.runtime.report_model import FlowTokens, Method, TaskSummary, UnfinishedTask
from execloop.runtime.task import TaskStatus

__all__ = [
    "CLASSIC_FLOW",
    "CODE_MODE",
    "METHODS",
    "PARALLEL_ASSUMPTION",
    "how_obtained",
    "task_sentence",
    "unfinished_sentence",
]

GOAL_CHARS = 140

CLASSIC_FLOW = (
    "**Classic flow**: the usual tool-calling agent. The model asks for one tool call per "
    "turn, the host runs it and appends the result to the conversation, and the model re-reads "
    "the whole conversation on its next turn, so its input grows with every call."
)
CODE_MODE = (
    "**Code mode** (execloop): the model writes one script; the script calls the tools itself "
    "inside the sandbox, and only its final answer goes back to the model. A failed check "
    "costs one more attempt: the prompt is sent again with a short failure report."
)
PARALLEL_ASSUMPTION = (
    "the same classic agent, assumed to ask in one turn for every call whose inputs it "
    "already has (which call needs which result is inferred from values that reappear in "
    "later arguments), so it takes as many turns as its longest chain of dependent calls"
)
METHODS = {
    Method.MEASURED_LIVE: "a real model's API reported the tokens",
    Method.REPLAYED: "recorded replies were played back by a scripted model and their "
    "tokens counted by the named tokenizer",
    Method.ESTIMATED: "computed from code mode's record of the tool calls by the classic-flow "
    "formula (runtime/classic.py); it is not a run of a classic agent",
}
_STATUS = {
    TaskStatus.PASSED: "passed",
    TaskStatus.FAILED: "failed",
    TaskStatus.BUDGET_EXHAUSTED: "ran out of budget",
    TaskStatus.ERROR: "ended in an error",
}


def how_obtained(figures: FlowTokens) -> str:
    """``estimated, counted by o200k_base (bpe-openai)``: a figure's method and counter."""
    return f"{figures.method.value}, counted by {figures.counted_by}"


def _goal(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= GOAL_CHARS else text[: GOAL_CHARS - 1] + "…"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _outcome(task: TaskSummary) -> str:
    passed, total = sum(c.passed for c in task.checks), len(task.checks)
    attempts = _plural(task.attempts, "attempt")
    if task.status is TaskStatus.PASSED:
        checks = f"all {_plural(total, 'check')}" if total else "(no checks)"
        return f"It passed {checks} in {attempts}"
    ended = _STATUS[task.status] + (f" ({task.error_kind.value})" if task.error_kind else "")
    failed = [c.name for c in task.checks if not c.passed]
    why = f", failing {', '.join(failed)} ({passed} of {total} checks passed)" if failed else ""
    return f"It {ended} after {attempts}{why}"


def _verb(classic: FlowTokens) -> str:
    return "would have read" if classic.method is Method.ESTIMATED else "read"


def _cost(task: TaskSummary, code: FlowTokens, classic: FlowTokens) -> str:
    code_in, classic_in = code.usage.total_input_tokens, classic.usage.total_input_tokens
    code_out, classic_out = code.usage.output_tokens, classic.usage.output_tokens
    calls = task.classic.calls if task.classic is not None else classic.tool_rounds or 0
    said = f"({classic.method.value})"
    if calls == 0:
        parts = ["It made no tool calls, so code mode had nothing to save:"]
        if code_in == classic_in:
            parts.append(f"both flows read the same {code_in:,} input tokens")
        else:
            parts.append(
                f"code mode read {code_in:,} input tokens, the classic flow {classic_in:,} {said}"
            )
            if code_in > classic_in and task.attempts > 1:
                parts[-1] += f", as each of its {task.attempts} attempts re-sent the prompt"
        if code_out > classic_out:
            parts[-1] += (
                f", and code mode wrote a {code_out:,}-token script where a classic agent "
                f"writes only its {classic_out:,}-token answer"
            )
        return " ".join(parts) + "."
    if classic_in > code_in:
        results = task.classic.result_tokens if task.classic is not None else None
        kept = f" ({results:,} tokens)" if results is not None else ""
        return (
            f"Code mode read {code_in:,} input tokens; the classic flow {_verb(classic)} "
            f"{classic_in:,} {said}, {classic_in / max(code_in, 1):,.1f}x as many, because the "
            f"script made its {_plural(calls, 'tool call')} itself: no model turn per call, and "
            f"their results{kept} stayed in the sandbox instead of being re-read on every later "
            "turn."
        )
    return (
        f"Code mode read {code_in:,} input tokens, more than the classic flow's {classic_in:,} "
        f"{said} for its {_plural(calls, 'tool call')}: its {_plural(task.attempts, 'attempt')} "
        "each re-sent the prompt, which outweighed the turns it saved."
    )


def task_sentence(task: TaskSummary) -> str:
    """What was asked, how it ended, and what it cost against the classic flow, and why."""
    asked = f"was asked to “{_goal(task.goal)}”" if task.goal else "(its goal was not recorded)"
    text = f"**{task.task_id}** {asked}. {_outcome(task)}."
    classic = task.classic_figures
    if classic is None:
        return f"{text} It has no classic-flow figure to compare with."
    return f"{text} {_cost(task, task.code_figures, classic)}"


def unfinished_sentence(task: UnfinishedTask) -> str:
    asked = f"was asked to “{_goal(task.goal)}”" if task.goal else "has no recorded goal"
    return (
        f"**{task.task_id}** {asked}. **Unfinished** ({task.state} when this report was "
        "written): it has no result yet and no figures."
    )
