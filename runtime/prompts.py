"""What the sub-agent is told, and the bounded memory of its earlier attempts.

Attempt n sees: the stable prefix (rules, skill, tool API — cacheable), the task (goal, the
inputs as ``Inputs.describe`` lists them, checks), a summary of attempts 1..n-2 capped in
tokens, and the full last script with its compact failure report. Nothing else accumulates,
so the prompt does not grow with n.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from execloop.runtime import bounds
from execloop.runtime.checks import CheckOutcome, CheckSpec
from execloop.runtime.models.base import ModelReply
from execloop.runtime.tokens import count_tokens
from execloop.sandboxes.base import ExecResult

__all__ = [
    "AttemptMemory",
    "CORRECTION",
    "SYSTEM_RULES",
    "describe_checks",
    "extract_script",
    "failure_report",
]

SYSTEM_RULES = """\
You are a sub-agent of execloop. You solve the task by writing ONE complete Python 3.11 script.
execloop runs it in an isolated sandbox: no network, the working directory holds the input
files, only the working directory and /tmp are writable, and the task's limits apply. The
script must write `result.json` (a JSON object summarising what it did) plus any outputs the
task asks for. execloop then runs the task's checks — you cannot see, edit or skip them — and,
if any fails, shows you a compact report so you can submit a corrected script.
Answer with a single `submit_script` tool call holding the whole script (never a diff). If
tool calls are unavailable, answer with one ```python fenced block and nothing else."""

CORRECTION = (
    "Your reply contained no script. Reply with exactly one submit_script tool call holding "
    "the complete script (or one ```python fenced block)."
)

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_script(reply: ModelReply) -> str | None:
    """The submitted script: the tool call's, else the first fenced block, else ``None``."""
    if reply.script and reply.script.strip():
        return reply.script
    match = _FENCE.search(reply.text or "")
    if match and match.group(1).strip():
        return match.group(1)
    return None


def describe_checks(checks: Sequence[CheckSpec]) -> str:
    if not checks:
        return "Checks: the script must exit with status 0."
    return "Checks that will judge your outputs:\n" + "\n".join(
        f"- {check.label()} ({check.kind})" for check in checks
    )


def failure_report(
    run: ExecResult | None, outcomes: Sequence[CheckOutcome], *, note: str = ""
) -> str:
    """The compact report after a failed attempt; every part is bounded."""
    if run is None:
        return CORRECTION
    parts = [f"Exit: {run.exit_reason.value} (code {run.exit_code}) after {run.duration_s:.1f} s."]
    if note:
        parts.append(note)
    failed = [o for o in outcomes if not o.passed]
    if outcomes:
        parts.append(f"Checks: {len(outcomes) - len(failed)}/{len(outcomes)} passed.")
    parts += [f"FAILED {o.name}: {o.reason}" for o in failed]
    for name, text, limit in (
        ("stderr", run.stderr, bounds.STDERR_TAIL_CHARS),
        ("stdout", run.stdout, bounds.STDOUT_TAIL_CHARS),
    ):
        if text.strip():
            parts.append(f"{name} (tail):\n" + bounds.tail(text.rstrip(), limit))
    return "\n".join(parts)


@dataclass
class AttemptMemory:
    """The last attempt in full, older ones as one line each, capped in tokens."""

    summary_tokens: int = bounds.SUMMARY_TOKENS
    older: list[str] = field(default_factory=list)
    last_script: str | None = None
    last_report: str | None = None
    last_line: str | None = None

    def record(self, *, script: str | None, report: str, one_line: str) -> None:
        if self.last_line is not None:
            self.older.append(self.last_line)
        self.last_script, self.last_report, self.last_line = script, report, one_line

    def _summary(self) -> str:
        kept: list[str] = []
        budget = self.summary_tokens
        for line in reversed(self.older):  # newest first: they matter most
            cost = count_tokens(line) + 1
            if cost > budget:
                break
            kept.append(line)
            budget -= cost
        dropped = len(self.older) - len(kept)
        lines = ([f"({dropped} earlier attempts omitted)"] if dropped else []) + kept[::-1]
        return "\n".join(lines)

    def render(self, attempt: int) -> str:
        """What attempt ``attempt`` is told about the earlier ones."""
        if self.last_report is None:
            return ""
        parts = [f"This is attempt {attempt}."]
        if self.older:
            parts.append("Earlier attempts:\n" + self._summary())
        if self.last_script is not None:
            script = bounds.middle(self.last_script, bounds.SCRIPT_CHARS)
            parts.append(f"Your last script (attempt {attempt - 1}):\n```python\n{script}\n```")
        parts.append(f"What happened:\n{self.last_report}")
        parts.append("Submit a corrected, complete script.")
        return "\n\n".join(parts)
