"""A sub-agent's bookkeeping: what its attempts gathered (usage, one ``AttemptRecord`` each,
the last checks, the workspace's artifacts, the answer, the time each phase took), the events
it sends while it runs, and the one ``Result`` made of it all at the end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from execloop.runtime.bridge import ToolCallRecord
from execloop.runtime.checks import CheckOutcome
from execloop.runtime.classic import CallTrace, ClassicEstimate, estimate_classic
from execloop.runtime.classic_prompt import ClassicPrompt
from execloop.runtime.ledger import Usage
from execloop.runtime.models.base import Model
from execloop.runtime.task import AttemptRecord, ErrorKind, Result, TaskStatus, Timings
from execloop.runtime.tokens import TOKENIZER_NAME
from execloop.sandboxes import Artifact, ExecResult

__all__ = ["LoopEvent", "LoopState"]


@dataclass(frozen=True)
class LoopEvent:
    """Progress for live displays and persistence: ``kind`` is attempt, reply, progress (a
    ``ProgressEvent`` the script reported, under ``"event"``), tool_calls (the attempt's bridge
    trace), ran, checked, recorded (its ``AttemptRecord``) or finished."""

    kind: str
    attempt: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoopState:
    """What one task's attempts have gathered so far; the last attempt's view wins."""

    usage: Usage = field(default_factory=Usage)
    records: list[AttemptRecord] = field(default_factory=list)
    outcomes: list[CheckOutcome] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    artifacts_total: tuple[int, int] = (0, 0)  # files, bytes: the whole workspace's
    outputs_refused: str | None = None  # why the outputs could not be kept for re-verification
    answer: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)  # the last attempt's
    model_s: float = 0.0
    sandbox_s: float = 0.0
    checks_s: float = 0.0

    def record(
        self,
        number: int,
        run: ExecResult | None,
        outcomes: Sequence[CheckOutcome],
        usage: Usage,
        prompt_tokens: int,
        script_chars: int,
        began: float,
    ) -> AttemptRecord:
        """Append attempt ``number``'s record (``run`` is None when the reply had no script)
        and return it; its duration runs from ``began`` (``time.monotonic``) to now."""
        self.records.append(
            AttemptRecord(
                number=number,
                exit_reason=run.exit_reason if run else None,
                exit_code=run.exit_code if run else None,
                checks_passed=sum(o.passed for o in outcomes),
                checks_total=len(outcomes),
                failed_checks=[o.name for o in outcomes if not o.passed],
                usage=usage,
                prompt_tokens=prompt_tokens,
                script_chars=script_chars,
                duration_s=time.monotonic() - began,
            )
        )
        return self.records[-1]

    def classic_estimate(
        self, prompt: ClassicPrompt, *, goal: str, final_answer: str
    ) -> ClassicEstimate:
        """What the classic agent (``prompt``, the ``goal`` as its user message) would have
        cost for the last attempt's successful calls, each result read as text."""
        calls = [
            CallTrace(
                tool=record.tool,
                arguments=record.arguments,
                result=record.text,
                argument_tokens=record.argument_tokens,
                result_tokens=record.text_tokens,
            )
            for record in self.tool_calls
            if record.ok
        ]
        return estimate_classic(
            system=prompt.system,
            tools=prompt.tools,
            user=goal,
            calls=calls,
            final_answer=final_answer,
        )

    def result(
        self,
        *,
        task_id: str,
        status: TaskStatus,
        error: str | None,
        kind: ErrorKind | None,
        total_s: float,
        model: Model,
        classic: ClassicEstimate,
    ) -> Result:
        """The task's one ``Result``: what was gathered, with its status and error."""
        return Result(
            task_id=task_id,
            status=status,
            answer=self.answer,
            checks=self.outcomes,
            artifacts=self.artifacts,
            artifacts_total_files=self.artifacts_total[0],
            artifacts_total_bytes=self.artifacts_total[1],
            attempts=len(self.records),
            attempt_log=self.records,
            usage=self.usage,
            usage_classic_estimate=classic,
            timings=Timings(
                total_s=total_s,
                model_s=self.model_s,
                sandbox_s=self.sandbox_s,
                checks_s=self.checks_s,
            ),
            model=model.name,
            scripted=model.scripted,
            tokenizer=TOKENIZER_NAME,
            error=error,
            error_kind=kind,
        )
