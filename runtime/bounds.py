"""Every limit on text that reaches a model or a result, and the one place text is cut.

Keeping the limits together makes the size of what a model sees auditable: the loop's prompt
is bounded because each piece of it is bounded here.
"""

from __future__ import annotations

__all__ = [
    "ANSWER_CHARS",
    "ARTIFACTS_LISTED",
    "INPUT_PREVIEW_CHARS",
    "REASON_CHARS",
    "SCRIPT_CHARS",
    "STDERR_TAIL_CHARS",
    "STDOUT_TAIL_CHARS",
    "SUMMARY_TOKENS",
    "head",
    "middle",
    "tail",
]

ANSWER_CHARS = 4000  # Result.answer
ARTIFACTS_LISTED = 200  # Result.artifacts and `execloop run`'s table; the rest are counted
REASON_CHARS = 300  # one check's reason
STDERR_TAIL_CHARS = 2000  # stderr shown back to the model after a failed attempt
STDOUT_TAIL_CHARS = 800  # stdout shown back to the model
SCRIPT_CHARS = 24_000  # the last script, quoted back in the next prompt
INPUT_PREVIEW_CHARS = 400  # first lines of each input file in the prompt
SUMMARY_TOKENS = 150  # the summary of attempts older than the last one


def _marker(omitted: int) -> str:
    return f"[… {omitted} characters omitted …]"


def head(text: str, limit: int) -> str:
    """The first ``limit`` characters, marked when cut."""
    if len(text) <= limit:
        return text
    marker = _marker(len(text) - limit)
    return text[: max(limit - len(marker) - 1, 0)] + "\n" + marker


def tail(text: str, limit: int) -> str:
    """The last ``limit`` characters (where errors are), marked when cut."""
    if len(text) <= limit:
        return text
    marker = _marker(len(text) - limit)
    return marker + "\n" + text[-max(limit - len(marker) - 1, 0) :]


def middle(text: str, limit: int) -> str:
    """Head and tail, with the middle cut out."""
    if len(text) <= limit:
        return text
    marker = _marker(len(text) - limit)
    keep = max(limit - len(marker) - 2, 0)
    return text[: keep - keep // 2] + "\n" + marker + "\n" + text[len(text) - keep // 2 :]
