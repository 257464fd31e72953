"""What a task's checks are (their spec) and what running one says (its outcome).

Checks are the task's immutable spec: the agent never sees them as files it could edit, the
runtime runs them (never the agent's say-so), and re-runs them on the final outputs before it
reports ``passed``. A failed check is control flow (``passed=False``), never an exception.
"""

from __future__ import annotations

import abc
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from execloop.errors import ConfigError
from execloop.runtime.bounds import REASON_CHARS
from execloop.runtime.check_expression import compile_expression

__all__ = [
    "AssertionsCheck",
    "CheckOutcome",
    "CheckSpec",
    "DatasetCheck",
    "ExitStatusCheck",
    "ExpressionCheck",
    "JsonSchemaCheck",
    "PytestCheck",
    "bounded_reason",
]


def bounded_reason(text: str, limit: int = REASON_CHARS) -> str:
    """A check's reason on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Check(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, description="Shown in reports; defaults per kind.")

    def label(self) -> str:
        return self.name or self.default_name()

    @abc.abstractmethod
    def default_name(self) -> str:
        """The name shown when the check has none of its own."""


class ExitStatusCheck(_Check):
    """The script exited with status 0 (and was not killed, timed out or out of memory)."""

    kind: Literal["exit_status"] = "exit_status"

    def default_name(self) -> str:
        return "exit status"


class AssertionsCheck(_Check):
    """The script's own ``assert`` statements held (no ``AssertionError`` escaped)."""

    kind: Literal["assertions"] = "assertions"

    def default_name(self) -> str:
        return "script assertions"


class PytestCheck(_Check):
    """A pytest file (host path, relative to the skill folder) run in the sandbox."""

    kind: Literal["pytest"] = "pytest"
    file: str
    args: tuple[str, ...] = ()

    def default_name(self) -> str:
        return f"pytest {self.file}"


class JsonSchemaCheck(_Check):
    """The script's ``result.json`` (or ``path``) is valid against a JSON Schema."""

    kind: Literal["json_schema"] = "json_schema"
    path: str = "result.json"
    json_schema: dict[str, Any] = Field(alias="schema")

    def default_name(self) -> str:
        return f"{self.path} matches its schema"


class ExpressionCheck(_Check):
    """A Python expression over ``result`` (the parsed result.json), e.g.
    ``result["rows_out"] > 0``; evaluated with RestrictedPython."""

    kind: Literal["expression"] = "expression"
    expr: str
    path: str = "result.json"

    @field_validator("expr")
    @classmethod
    def _compiles(cls, expr: str) -> str:
        """Refused when built, so a check that can never pass costs no attempt."""
        expr = expr.strip()
        if not expr:
            raise ConfigError("an expression check needs a non-empty expr")
        try:
            compile_expression(expr)
        except ValueError as exc:
            raise ConfigError(f"check expression {expr!r} does not compile: {exc}") from exc
        return expr

    def default_name(self) -> str:
        return self.expr


class DatasetCheck(_Check):
    """A dataset the script wrote: readable, required columns, no duplicates, class balance."""

    kind: Literal["dataset"] = "dataset"
    path: str
    format: Literal["jsonl", "csv", "parquet"] | None = Field(
        default=None, description="Inferred from the extension when omitted."
    )
    required_columns: tuple[str, ...] = ()
    unique_by: tuple[str, ...] | None = Field(
        default=None, description="No two rows share these columns; () means whole rows."
    )
    label_column: str | None = None
    max_imbalance: float | None = Field(
        default=None, gt=1, description="Largest allowed majority/minority class ratio."
    )
    min_rows: int = Field(default=1, ge=0)

    def default_name(self) -> str:
        return f"dataset {self.path}"


CheckSpec = Annotated[
    ExitStatusCheck
    | AssertionsCheck
    | PytestCheck
    | JsonSchemaCheck
    | ExpressionCheck
    | DatasetCheck,
    Field(discriminator="kind"),
]


class CheckOutcome(BaseModel):
    """One check's verdict; ``reason`` is at most 300 characters."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    passed: bool
    reason: str = Field(default="", max_length=REASON_CHARS)
