"""``execloop bench tokens``: both flows on each task of a suite, measured side by side.

Per task, code mode runs first (``SubAgent``: one script in a real sandbox, its tool calls
through the bridge), then the classic agent (``ClassicAgent``: one call per turn), each on a
fresh shop, and the same check judges each flow's effects and answer. Without a model
(``replay``) both talk to one ``ReplayModelServer`` through the same adapter and SDK: code mode
submits the task's script, the classic agent follows the calls that script made, and the server
counts every request with the project's tokenizer. With a model (``measured-live``) both flows
ask the model, and the figures are the provider's usage.

Prompt caching is priced on both sides (``figures``); the cache starts empty for every
flow of every task. The ledger's estimate of the classic flow (computed from the code-mode run
alone) is kept beside the measured classic figure: ``estimate_ratio`` is estimate / measured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from execloop.runtime.benchmarks.figures import (
    Protocol,
    Summary,
    TaskComparison,
    TokenBench,
    compare,
)
from execloop.runtime.benchmarks.replay import FinalText, ReplayModelServer, SubmitScript, ToolUse
from execloop.runtime.benchmarks.suite import BenchTask
from execloop.runtime.bridge.gate import ToolCallRecord
from execloop.runtime.bridge.stubs import ToolDocs
from execloop.runtime.classic_agent import ClassicAgent, ClassicRun
from execloop.runtime.loop import LoopEvent, SubAgent
from execloop.runtime.models.anthropic_model import AnthropicModel
from execloop.runtime.models.base import Model
from execloop.runtime.models.openai_model import OpenAIModel
from execloop.runtime.report_model import Method
from execloop.runtime.task import Budget, Result, Task, TaskStatus
from execloop.sandboxes.spec import DEFAULT_BACKEND, Backend, SandboxSpec

__all__ = ["ComparedRuns", "run_suite", "run_task"]


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
    backend: Backend = DEFAULT_BACKEND,
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
        method=Method.MEASURED_LIVE if live_model else Method.REPLAYED,
        tool_docs=tool_docs,
        tasks=comparisons,
        summaries={s: Summary.of([c for c in comparisons if c.source == s]) for s in sources},
    )


@dataclass(frozen=True)
class ComparedRuns:
    """One task's two runs (code mode and the classic agent) as they happened, and their
    comparison."""

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
) -> ComparedRuns:
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
        method=Method.REPLAYED if replay is not None else Method.MEASURED_LIVE,
        result=result,
        code_success=code_ok,
        code_calls=sum(r.ok for r in records),
        classic=classic,
        classic_success=classic_ok,
    )
    return ComparedRuns(comparison, result, classic)
