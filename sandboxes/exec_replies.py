"""What a helper's exec reply means as an ``ExecResult``.

The helper shares its process with the user's code, which can write to the control socket: a
reply that breaks the protocol is the script's doing as far as the host can tell, so it is data
(an ``error`` result, the session closed), never an exception to the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from execloop.errors import ProtocolError
from execloop.sandboxes.base import ExecResult, ExitReason

__all__ = ["BrokenReply", "garbled_result", "killed_result", "plain", "result_from_reply"]


def plain(why: object) -> str:
    """A reason the helper gave, made safe to show (it shares a process with the user's code):
    printable characters only, one bounded line."""
    text = "".join(c if c.isprintable() else "?" for c in str(why))
    return text[:300]


@dataclass(frozen=True)
class BrokenReply:
    """A reply that is not the protocol: ``why`` the session ends, and the error to report."""

    why: str
    error: ProtocolError


def killed_result(reason: ExitReason, started: float) -> ExecResult:
    """The sandbox was killed mid-exec (a timeout, the OOM killer...): its state is gone."""
    return ExecResult(
        exit_code=None,
        exit_reason=reason,
        stderr=f"execloop: the sandbox was killed ({reason.value}) "
        f"after {time.monotonic() - started:.2f} s; its state is gone",
        duration_s=time.monotonic() - started,
    )


def garbled_result(exc: ProtocolError, started: float) -> ExecResult:
    """An exec whose channel carried something that is not the protocol (the session is
    closed by the caller)."""
    return ExecResult(
        exit_code=None,
        exit_reason=ExitReason.ERROR,
        stderr=f"execloop: the channel to the sandbox broke the protocol ({exc}); the "
        "script may have written to execloop's control socket. The session was closed",
        duration_s=time.monotonic() - started,
    )


def result_from_reply(reply: dict[str, Any], started: float) -> ExecResult | BrokenReply:
    """The exec's result, or why the reply cannot be one. A reply that says the session
    ``ended`` still gives a result; the caller closes the session."""
    ended = reply.get("ended")
    if not reply.get("ok"):
        if not ended:
            why = "the helper failed an exec"
            return BrokenReply(why, ProtocolError(f"{why}: {reply.get('error')}"))
        return ExecResult(  # the helper could not even begin (no memory left)
            exit_code=None,
            exit_reason=ExitReason.OOM if reply.get("exit_reason") == "oom" else ExitReason.ERROR,
            stderr=f"execloop: {plain(ended)}; the session was closed",
            duration_s=time.monotonic() - started,
        )
    fields = {k: v for k, v in reply.items() if k not in ("ok", "ended")}
    try:
        return ExecResult.model_validate(fields)
    except ValidationError as exc:
        why = "a malformed exec reply"
        return BrokenReply(why, ProtocolError(f"malformed exec reply from the helper: {exc}"))
