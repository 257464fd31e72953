"""The structured outputs of the MCP server's tools (their ``outputSchema``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from execloop.runtime.classic import ClassicComparison, ClassicEstimate
from execloop.runtime.ledger import Usage
from execloop.runtime.task import TaskStatus
from execloop.sandboxes import ExitReason

__all__ = [
    "RunPythonOutput",
    "SessionClosed",
    "SkillInfo",
    "SkillList",
    "TaskTokens",
    "TokenReport",
]


class RunPythonOutput(BaseModel):
    """One ``run_python`` call: the script's outcome and the handle of its session."""

    session_id: str = Field(description="Pass it to the next run_python call to keep state.")
    session_ended: str | None = Field(
        default=None,
        description="Why the session can run no more code (the script ended it, a timeout or "
        "memory limit killed it); the handle is then closed. None while it is usable.",
    )
    exit_reason: ExitReason = Field(description="ok, error, timeout, oom, killed, output_limit")
    exit_code: int | None
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    peak_memory_bytes: int | None = None


class SkillInfo(BaseModel):
    name: str
    version: str
    description: str
    inputs: dict[str, Any] = Field(description="JSON Schema of the skill's task.json.")


class SkillList(BaseModel):
    skills: list[SkillInfo]
    broken: list[str] = Field(description="One line per SKILL.md that does not validate.")


class SessionClosed(BaseModel):
    session_id: str
    closed: bool


class TaskTokens(BaseModel):
    """One task's token ledger: what it cost, and what classic tool calling would have."""

    task_id: str
    status: TaskStatus
    attempts: int
    scripted: bool
    usage: Usage
    classic_estimate: ClassicEstimate | None
    comparison: ClassicComparison | None = Field(description="Ratios classic / actual.")


class TokenReport(BaseModel):
    scope: Literal["task", "run"]
    run_id: str | None
    tasks: list[TaskTokens]
    total: Usage = Field(description="The tasks' actual usage, added up.")
