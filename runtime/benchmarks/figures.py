"""The figures of ``execloop bench tokens``: one flow on one task (``FlowCosts``), one task's
comparison (``TaskComparison``), a whole run (``TokenBench``), all pydantic so reports and other
tools read the JSON. Costs are in units of one uncached input token: cache reads 0.1x, writes
1.25x, output ``OUTPUT_WEIGHT``x (Claude's output/input price ratio).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from execloop.runtime.benchmarks.suite import BenchTask
from execloop.runtime.bridge.stubs import ToolDocs
from execloop.runtime.classic import (
    CACHE_READ_WEIGHT,
    CACHE_WRITE_WEIGHT,
    ClassicFlow,
    input_cost_units,
)
from execloop.runtime.classic_agent import ClassicRun
from execloop.runtime.ledger import Usage
from execloop.runtime.report_model import Method
from execloop.runtime.task import Result
from execloop.runtime.tokens import TOKENIZER_NAME

__all__ = [
    "FlowCosts",
    "MANY_CALLS",
    "OUTPUT_WEIGHT",
    "Protocol",
    "Spread",
    "Summary",
    "TaskComparison",
    "TokenBench",
    "compare",
    "cost",
]

OUTPUT_WEIGHT = 5.0
MANY_CALLS = 5  # the acceptance figures are over tasks with at least this many calls
Protocol = Literal["anthropic", "openai"]


class FlowCosts(BaseModel):
    """One flow on one task as the token benchmark compares it: tokens, what they cost (in
    units of one uncached input token), success and time. (A report's ``FlowTokens`` is a
    flow's usage and how it was obtained.)"""

    model_config = ConfigDict(frozen=True)

    task: str
    flow: Literal["code", "classic"]
    method: Method
    tokenizer: str
    input_tokens: int = Field(description="Every input token, cached or not.")
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_uncached: float = Field(description="All input at 1x, output at OUTPUT_WEIGHT.")
    cost_cached: float = Field(description="Cache reads 0.1x, writes 1.25x, rest 1x; output.")
    input_cost_cached: float = Field(description="cost_cached without the output.")
    success: bool | None = Field(description="The task's check passed; None for an estimate.")
    attempts: int
    calls: int
    requests: int
    wall_s: float | None
    cumulative_input: list[int] = Field(description="Input tokens sent so far, per request.")


class TaskComparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: str
    source: str = Field(description="The suite it comes from: execloop's, or BFCL's.")
    goal: str
    calls: int
    code: FlowCosts
    classic: FlowCosts
    estimate: FlowCosts = Field(description="The ledger's classic estimate from code mode.")
    estimate_ratio: float | None = Field(description="Estimate / measured classic input.")
    input_savings: float = Field(description="1 - code input / classic input (uncached).")
    cached_input_savings: float = Field(
        description="1 - code / classic input cost, caching priced on both sides."
    )
    cached_cost_savings: float = Field(
        description="1 - code / classic cost with output, caching priced on both sides."
    )
    break_even_attempts: float = Field(
        description="Code-mode attempts that cost as much as the classic run (caching priced)."
    )


class Spread(BaseModel):
    model_config = ConfigDict(frozen=True)

    tasks: int
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(
            tasks=len(values), median=statistics.median(values), low=min(values), high=max(values)
        )


class TokenBench(BaseModel):
    """A whole run: what ran where, per-task comparisons, and the acceptance figures."""

    model_config = ConfigDict(frozen=True)

    date: str
    model: str
    protocol: Protocol
    backend: str
    method: Method
    tool_docs: ToolDocs = Field(
        default="full", description="Code mode's tool listing: full docstrings or one line each."
    )
    tokenizer: str = TOKENIZER_NAME
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "cache_read": CACHE_READ_WEIGHT,
            "cache_write": CACHE_WRITE_WEIGHT,
            "output": OUTPUT_WEIGHT,
        }
    )
    tasks: list[TaskComparison]
    summaries: dict[str, Summary] = Field(description="Per task source (suite).")


class Summary(BaseModel):
    """One source's acceptance figures."""

    model_config = ConfigDict(frozen=True)

    input_savings: Spread | None = Field(description=f"Over tasks with >= {MANY_CALLS} calls.")
    cached_input_savings: Spread | None = Field(description=f"Tasks with >= {MANY_CALLS} calls.")
    cached_cost_savings: Spread | None = Field(description=f"Tasks with >= {MANY_CALLS} calls.")
    estimate_ratio: Spread | None = Field(description="Over every task.")

    @classmethod
    def of(cls, comparisons: Sequence[TaskComparison]) -> Summary:
        many = [c for c in comparisons if c.calls >= MANY_CALLS]
        ratios = [c.estimate_ratio for c in comparisons if c.estimate_ratio is not None]
        return cls(
            input_savings=Spread.of([c.input_savings for c in many]),
            cached_input_savings=Spread.of([c.cached_input_savings for c in many]),
            cached_cost_savings=Spread.of([c.cached_cost_savings for c in many]),
            estimate_ratio=Spread.of(ratios),
        )


def cost(usage: Usage, *, cached: bool) -> float:
    """Cost units of ``usage``: without caching every input token is 1x."""
    input_cost = input_cost_units(usage) if cached else usage.total_input_tokens
    return input_cost + OUTPUT_WEIGHT * usage.output_tokens


def _cumulative(usages: Sequence[Usage]) -> list[int]:
    totals, running = [], 0
    for usage in usages:
        running += usage.total_input_tokens
        totals.append(running)
    return totals


def _figures(
    task: str,
    flow: Literal["code", "classic"],
    method: Method,
    usage: Usage,
    *,
    success: bool | None,
    attempts: int,
    calls: int,
    wall_s: float | None,
    per_request: Sequence[Usage],
) -> FlowCosts:
    return FlowCosts(
        task=task,
        flow=flow,
        method=method,
        tokenizer=TOKENIZER_NAME,
        input_tokens=usage.total_input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
        cost_uncached=cost(usage, cached=False),
        cost_cached=cost(usage, cached=True),
        input_cost_cached=input_cost_units(usage),
        success=success,
        attempts=attempts,
        calls=calls,
        requests=usage.requests,
        wall_s=wall_s,
        cumulative_input=_cumulative(per_request),
    )


def _estimated(task: str, flow: ClassicFlow, calls: int) -> FlowCosts:
    # the uncached and the cached variants of one flow: same tokens, split differently
    usage = flow.cached.model_copy(update={"input_tokens": 0})
    figures = _figures(
        task,
        "classic",
        Method.ESTIMATED,
        usage,
        success=None,
        attempts=1,
        calls=calls,
        wall_s=None,
        per_request=[],
    )
    return figures.model_copy(update={"cost_uncached": cost(flow.uncached, cached=False)})


def compare(
    bench_task: BenchTask,
    *,
    method: Method,
    result: Result,
    code_success: bool,
    code_calls: int,
    classic: ClassicRun,
    classic_success: bool,
) -> TaskComparison:
    """The comparison of one task's two runs (and the ledger's estimate)."""
    name = bench_task.name
    code = _figures(
        name,
        "code",
        method,
        result.usage,
        success=code_success,
        attempts=result.attempts,
        calls=code_calls,
        wall_s=result.timings.total_s,
        per_request=[r.usage for r in result.attempt_log],
    )
    measured = _figures(
        name,
        "classic",
        method,
        classic.usage,
        success=classic_success,
        attempts=1,
        calls=len(classic.calls),
        wall_s=classic.wall_s,
        per_request=list(classic.requests),
    )
    estimate = result.usage_classic_estimate
    assert estimate is not None  # a SubAgent result always carries one
    estimated = _estimated(name, estimate.sequential, estimate.calls)
    per_attempt = code.cost_cached / max(code.attempts, 1)
    return TaskComparison(
        task=name,
        source=bench_task.source,
        goal=bench_task.goal,
        calls=len(classic.calls),
        code=code,
        classic=measured,
        estimate=estimated,
        estimate_ratio=estimated.input_tokens / measured.input_tokens
        if measured.input_tokens
        else None,
        input_savings=1 - code.input_tokens / measured.input_tokens,
        cached_input_savings=1 - code.input_cost_cached / measured.input_cost_cached,
        cached_cost_savings=1 - code.cost_cached / measured.cost_cached,
        break_even_attempts=measured.cost_cached / per_attempt,
    )
