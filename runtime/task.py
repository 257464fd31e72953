"""A task (what the orchestrator asks) and its one result (what it gets back).

The ``Result`` JSON form is a contract with orchestrators: tests pin its keys. It never carries
file contents (artifacts are path, size, sha256) and its text fields are bounded.
"""

from __future__ import annotations

import enum
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from execloop.errors import (
    BackendUnavailableError,
    ConfigError,
    ImageError,
    ModelError,
    SandboxError,
)
from execloop.runtime.checks import CheckOutcome, CheckSpec
from execloop.runtime.classic import ClassicEstimate
from execloop.runtime.inputs import Inputs
from execloop.runtime.ledger import Usage
from execloop.sandboxes.base import Artifact, ExitReason
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["AttemptRecord", "Budget", "ErrorKind", "Result", "Task", "TaskStatus", "Timings"]


class Budget(BaseModel):
    """When the loop gives up: attempts, tokens (input + output, all kinds), wall time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=5, ge=1, le=200)
    max_tokens: int = Field(default=400_000, ge=1)
    max_wall_time_s: float = Field(default=1800.0, gt=0, allow_inf_nan=False)


class Task(BaseModel):
    """What a sub-agent must achieve. ``checks`` are the immutable spec it is judged by; a
    skill's own checks are added to them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    goal: str
    skill: str | None = None
    inputs: tuple[Path, ...] = ()
    checks: tuple[CheckSpec, ...] = ()
    sandbox: SandboxSpec = SandboxSpec()
    tools: tuple[str, ...] = ()
    budget: Budget = Budget()
    classic_system: str | None = Field(
        default=None,
        description="The classic agent's system prompt, for the ledger's estimate of the "
        "classic flow (default: execloop's; the tools' schemas are added from the registry).",
    )

    @field_validator("goal")
    @classmethod
    def _goal_said(cls, goal: str) -> str:
        if not goal.strip():
            raise ValueError("must not be empty: say what the sub-agent should achieve")
        return goal

    @field_validator("inputs")
    @classmethod
    def _inputs_usable(cls, inputs: tuple[Path, ...]) -> tuple[Path, ...]:
        """Walked and checked as the sandbox will get them (``Inputs.collect``): missing
        paths, links out of an input, fifos and devices, name clashes are refused here."""
        return Inputs.collect(inputs).paths


class TaskStatus(enum.StrEnum):
    PASSED = "passed"  # every check passed, re-verified in a fresh sandbox
    FAILED = "failed"  # the attempts ran out with checks still failing
    BUDGET_EXHAUSTED = "budget_exhausted"  # the token or wall-time budget ran out first
    ERROR = "error"  # infrastructure failed (model provider, sandbox backend)


class ErrorKind(enum.StrEnum):
    """Why a task ended without passing or failing its checks: ``Result.error_kind``, next to
    the human-readable ``Result.error``. Callers branch on this, never on the text."""

    INVALID_TASK = "invalid_task"  # the task, its skill or its inputs were refused
    MODEL = "model"  # the model provider failed after retries, or replied garbage
    SANDBOX = "sandbox"  # a sandbox, its backend or its image failed as infrastructure
    BUDGET = "budget"  # the token or wall-time budget ran out
    CANCELLED = "cancelled"  # the orchestrator cancelled the task
    INTERNAL = "internal"  # a bug in execloop (the log has the traceback)

    @classmethod
    def of(cls, exc: BaseException) -> ErrorKind:
        """The kind of error ``exc`` ended a task with."""
        if isinstance(exc, ConfigError):
            return cls.INVALID_TASK
        if isinstance(exc, ModelError):
            return cls.MODEL
        if isinstance(exc, SandboxError | BackendUnavailableError | ImageError):
            return cls.SANDBOX
        return cls.INTERNAL


class AttemptRecord(BaseModel):
    """One attempt, compactly: enough to see what happened, never the bytes it produced."""

    model_config = ConfigDict(frozen=True)

    number: int
    exit_reason: ExitReason | None = Field(description="None when no script was submitted.")
    exit_code: int | None = None
    checks_passed: int = 0
    checks_total: int = 0
    failed_checks: list[str] = Field(default_factory=list)
    usage: Usage = Usage()
    prompt_tokens: int = Field(default=0, description="The prompt's size by the tokenizer.")
    script_chars: int = 0
    duration_s: float = 0.0


class Timings(BaseModel):
    model_config = ConfigDict(frozen=True)

    total_s: float = 0.0
    model_s: float = 0.0
    sandbox_s: float = 0.0
    checks_s: float = 0.0


class Result(BaseModel):
    """Exactly one per task."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    status: TaskStatus
    answer: str = Field(default="", description="result.json, else the stdout tail; bounded.")
    checks: list[CheckOutcome] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(
        default_factory=list, description="The first files of the workspace (bounded)."
    )
    artifacts_total_files: int = Field(default=0, description="Files in the whole workspace.")
    artifacts_total_bytes: int = Field(default=0, description="Their total size.")
    attempts: int = 0
    attempt_log: list[AttemptRecord] = Field(default_factory=list)
    usage: Usage = Usage()
    usage_classic_estimate: ClassicEstimate | None = None
    timings: Timings = Timings()
    model: str = ""
    scripted: bool = Field(default=False, description="True when a ScriptedModel answered.")
    tokenizer: str = ""
    error: str | None = Field(default=None, description="What went wrong, for people; bounded.")
    error_kind: ErrorKind | None = Field(
        default=None, description="Set with ``error``: what kind of failure, for programs."
    )

    @model_validator(mode="after")
    def _kind_given(self) -> Result:
        ended_early = self.status in (TaskStatus.ERROR, TaskStatus.BUDGET_EXHAUSTED)
        if ended_early and self.error_kind is None:
            raise ValueError(f"a result with status {self.status.value} needs its error_kind")
        if self.error_kind is not None and self.error is None:
            raise ValueError("error_kind needs the error's text in `error`")
        return self
