"""What a run's report is written from: its tasks, each with what was asked, what came out, and
every token figure with how it was obtained (``Method``) and who counted it.

The broker fills a ``RunSummary`` from its database (``summarize_run``); a benchmark that runs
the classic agent too sets ``TaskSummary.classic_measured``, and the report then shows that
figure, named by its method, in place of the estimate.
"""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from execloop.runtime.checks import CheckOutcome
from execloop.runtime.classic import ClassicEstimate
from execloop.runtime.ledger import Usage
from execloop.runtime.task import ErrorKind, TaskStatus

__all__ = [
    "FlowTokens",
    "Method",
    "RunSummary",
    "StageSummary",
    "TaskSummary",
    "UnfinishedTask",
]

MODEL_API = "the model's API"


class Method(enum.StrEnum):
    """How a figure was obtained."""

    MEASURED_LIVE = "measured-live"  # a real model's API reported it
    REPLAYED = "replayed"  # recorded replies played back, their tokens counted by a tokenizer
    ESTIMATED = "estimated"  # computed from the code-mode trace by the classic-flow formula


class FlowTokens(BaseModel):
    """One flow's tokens on one task, and how they were obtained (what a report shows; the
    token benchmark's costed row is ``benchmarks.figures.FlowCosts``)."""

    model_config = ConfigDict(frozen=True)

    method: Method
    counted_by: str = Field(description="A tokenizer's name, or the model's API.")
    usage: Usage = Field(description="As sent: cache reads and writes where the API used them.")
    cached: Usage | None = Field(default=None, description="The same requests, prompt-cached.")
    request_input_tokens: tuple[int, ...] = Field(
        default=(), description="Input tokens of each model request, in order."
    )
    tool_rounds: int | None = Field(default=None, ge=0)


class StageSummary(BaseModel):
    """One stage of a run: the orchestrator's own steps, then its sub-agents in parallel."""

    model_config = ConfigDict(frozen=True)

    name: str
    orchestration_steps: int = Field(default=0, ge=0)


class TaskSummary(BaseModel):
    """A finished task. Fields after ``scripted`` are optional so older summaries still load."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    status: TaskStatus
    error_kind: ErrorKind | None = None
    attempts: int = Field(ge=0)
    steps: int | None = Field(default=None, ge=0, description="Sub-agent steps; None: attempts.")
    stage: str = "main"
    usage: Usage
    usage_counted_by: str = MODEL_API
    classic: ClassicEstimate | None = None
    started_at: datetime
    ended_at: datetime
    scripted: bool = False
    goal: str = ""
    checks: list[CheckOutcome] = Field(default_factory=list)
    model: str = ""
    backend: str = ""
    attempt_input_tokens: tuple[int, ...] = Field(
        default=(), description="Input tokens of each attempt's model requests, in order."
    )
    classic_measured: FlowTokens | None = Field(
        default=None, description="The classic agent run on this task (live or replayed)."
    )

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def agent_steps(self) -> int:
        return self.attempts if self.steps is None else self.steps

    @property
    def code_figures(self) -> FlowTokens:
        """Code mode's own usage: replayed when a scripted model answered, else measured."""
        return FlowTokens(
            method=Method.REPLAYED if self.scripted else Method.MEASURED_LIVE,
            counted_by=self.usage_counted_by,
            usage=self.usage,
            request_input_tokens=self.attempt_input_tokens,
        )

    @property
    def classic_figures(self) -> FlowTokens | None:
        """The classic agent's figures: measured when it ran, else the ledger's estimate (the
        sequential agent: one call per turn)."""
        if self.classic_measured is not None:
            return self.classic_measured
        if self.classic is None:
            return None
        flow = self.classic.sequential
        return FlowTokens(
            method=Method.ESTIMATED,
            counted_by=self.classic.tokenizer,
            usage=flow.uncached,
            cached=flow.cached,
            request_input_tokens=flow.request_input_tokens,
            tool_rounds=flow.rounds,
        )


class UnfinishedTask(BaseModel):
    """A task of the run with no result yet (still running, or its broker died)."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    goal: str = ""
    state: str = Field(default="queued", description="queued or running, as stored.")


class RunSummary(BaseModel):
    """Stages not listed here have no orchestration steps; they are ordered as first seen."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    tasks: list[TaskSummary]
    stages: list[StageSummary] = Field(default_factory=list)
    unfinished: list[UnfinishedTask] = Field(default_factory=list)
    started_at: datetime | None = None
    model: str = ""
