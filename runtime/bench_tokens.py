"""``execloop bench tokens``: both flows on each task of a suite, measured side by side.

Per task, code mode runs first (``SubAgent``: one script in a real sandbox, its tool calls
through the bridge), then the classic agent (``ClassicAgent``: one call per turn), each on a
fresh shop, and the same check judges each flow's effects and answer. Without a model
(``replay``) both talk to one ``ReplayModelServer`` through the same adapter and SDK: code mode
submits the task's script, the classic agent follows the calls that script made, and the server
counts every request with the project's tokenizer. With a model (``measured-live``) both flows
ask the model, and the figures are the provider's usage.

Prompt caching is priced on both sides: reads 0.1x, writes 1.25x of an input token, output
``OUTPUT_WEIGHT``x (Claude's output/input price ratio); the cache starts empty for every flow of
every task. The ledger's estimate of the classic flow (computed from the code-mode run alone) is
kept beside the measured classic figure: ``estimate_ratio`` is estimate / measured input.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from execloop.runtime.bench_suite import BenchTask
from execloop.runtime.bridge.gate import ToolCallRecord
from execloop.runtime.bridge.stubs import ToolDocs
from execloop.runtime.classic import (
    CACHE_READ_WEIGHT,
    CACHE_WRITE_WEIGHT,
    ClassicFlow,
    input_cost_units,
)
from execloop.runtime.classic_agent import ClassicAgent, ClassicRun
from execloop.runtime.ledger import Usage
from execloop.runtime.loop import LoopEvent, SubAgent
from execloop.runtime.models.anthropic_model import AnthropicModel
from execloop.runtime.models.base import Model
from execloop.runtime.models.openai_model import OpenAIModel
from execloop.runtime.task import Budget, Result, Task, TaskStatus
from execloop.runtime.tokens import TOKENIZER_NAME
from execloop.sandboxes.spec import Backend, SandboxSpec
from execloop.testing.replay import FinalText, ReplayModelServer, SubmitScript, ToolUse

__all__ = [
    "FlowFigures",
    "OUTPUT_WEIGHT",
    "Spread",
    "Summary",
    "TaskComparison",
    "TaskRun",
    "TokenBench",
    "run_suite",
    "run_task",
]

OUTPUT_WEIGHT = 5.0
MANY_CALLS = 5  # the acceptance figures are over tasks with at least this many calls
Method = Literal["measured-live", "replayed", "estimated"]
Protocol = Literal["anthropic", "openai"]


class FlowFigures(BaseModel):
    """One flow on one task. Costs are in units of one uncached input token."""

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
    code: FlowFigures
    classic: FlowFigures
    estimate: FlowFigures = Field(description="The ledger's classic estimate from code mode.")
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
    out = OUTPUT_WEIGHT * usage.output_tokens
    if not cached:
        return usage.total_input_tokens + out
    return (
        usage.input_tokens
        + CACHE_READ_WEIGHT * usage.cache_read_input_tokens
        + CACHE_WRITE_WEIGHT * usage.cache_creation_input_tokens
        + out
    )


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
) -> FlowFigures:
    return FlowFigures(
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


def _estimated(task: str, flow: ClassicFlow, calls: int) -> FlowFigures:
    # the uncached and the cached variants of one flow: same tokens, split differently
    usage = flow.cached.model_copy(update={"input_tokens": 0})
    figures = _figures(
        task,
        "classic",
        "estimated",
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


async def _code_mode(
    bench_task: BenchTask, model: Model, backend: Backend, attempts: int, tool_docs: ToolDocs
) -> tuple[Result, bool, list[ToolCallRecord]]:
    state = bench_task.new_state()
    records: list[ToolCallRecord] = []

    def keep(event: LoopEvent) -> None:
        if event.kind == "tool_calls":
            records[:] = event.data["records"]

    async with bench_task.tools_for(state) as registry:
        task = Task(
            goal=bench_task.goal,
            tools=bench_task.tools,
            sandbox=SandboxSpec(backend=backend),
            budget=Budget(max_attempts=attempts),
        )
        agent = SubAgent(task, model=model, registry=registry, on_event=keep, tool_docs=tool_docs)
        result = await agent.run()
    passed = result.status is TaskStatus.PASSED and bench_task.check(state, result.answer)
    return result, passed, records


async def _classic(bench_task: BenchTask, model: Model) -> tuple[ClassicRun, bool]:
    state = bench_task.new_state()
    async with bench_task.tools_for(state) as registry:
        agent = ClassicAgent.from_registry(registry, bench_task.tools, model=model)
        run = await agent.run(bench_task.goal)
    return run, run.finished and bench_task.check(state, run.answer)


def _replay_model(server: ReplayModelServer, protocol: Protocol) -> AnthropicModel | OpenAIModel:
    if protocol == "openai":
        return OpenAIModel(model="replay", base_url=server.openai_base_url, max_retries=0)
    return AnthropicModel(model="replay", base_url=server.base_url, api_key="replay", max_retries=0)


async def run_suite(
    tasks: Sequence[BenchTask],
    *,
    backend: Backend = "local",
    protocol: Protocol = "anthropic",
    live_model: Model | None = None,
    on_task: Callable[[TaskComparison], None] | None = None,
    tool_docs: ToolDocs = "full",
) -> TokenBench:
    """Both flows on every task: replayed without ``live_model``, else measured live."""
    comparisons = []
    with ReplayModelServer() as server:
        model = live_model or _replay_model(server, protocol)
        try:
            for bench_task in tasks:
                ran = await run_task(
                    bench_task,
                    model=model,
                    backend=backend,
                    replay=None if live_model else server,
                    tool_docs=tool_docs,
                )
                comparisons.append(ran.comparison)
                if on_task is not None:
                    on_task(ran.comparison)
        finally:
            if live_model is None and isinstance(model, AnthropicModel | OpenAIModel):
                await model.aclose()
    sources = dict.fromkeys(c.source for c in comparisons)
    return TokenBench(
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        model=live_model.name if live_model else f"replay ({protocol} API, loopback)",
        protocol=protocol,
        backend=backend,
        method="measured-live" if live_model else "replayed",
        tool_docs=tool_docs,
        tasks=comparisons,
        summaries={s: Summary.of([c for c in comparisons if c.source == s]) for s in sources},
    )


@dataclass(frozen=True)
class TaskRun:
    """One task's two runs as they happened, and their comparison."""

    comparison: TaskComparison
    code: Result
    classic: ClassicRun


async def run_task(
    bench_task: BenchTask,
    *,
    model: Model,
    backend: Backend,
    replay: ReplayModelServer | None,
    tool_docs: ToolDocs = "full",
) -> TaskRun:
    """Code mode, then the classic agent, on ``bench_task``. With ``replay`` (the server
    ``model`` talks to), each flow gets its plan and an empty cache; else ``model`` is live."""
    if replay is not None:
        replay.clear_cache()
        replay.plan([SubmitScript(bench_task.script)])
    attempts = 1 if replay is not None else 3
    result, code_ok, records = await _code_mode(bench_task, model, backend, attempts, tool_docs)
    if replay is not None:  # the classic agent makes the calls the script made, then answers
        replay.clear_cache()
        calls = [ToolUse(r.tool, json.loads(r.arguments)) for r in records if r.ok]
        replay.plan([*calls, FinalText(result.answer)])
    classic, classic_ok = await _classic(bench_task, model)
    comparison = compare(
        bench_task,
        method="replayed" if replay is not None else "measured-live",
        result=result,
        code_success=code_ok,
        code_calls=sum(r.ok for r in records),
        classic=classic,
        classic_success=classic_ok,
    )
    return TaskRun(comparison, result, classic)
