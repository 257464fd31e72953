"""The counterfactual: what the classic round-trip tool-calling flow would have cost for the
same tool calls that a code-mode script made.

In the classic flow the model emits a tool call, the host runs it, and the result is appended
to the conversation; the next request re-sends the whole conversation. With S the system prompt
plus tool schemas, U the user message, and for round m the call tokens O_m (tool name plus
argument text, which the model emits) and result tokens R_m (fed back), T tool rounds take
T + 1 requests (the last one writes the final answer, F tokens)::

    input  = (T+1)(S+U) + Σ_{m=1..T} (T+1-m)(O_m+R_m)
    output = Σ_{m=1..T} O_m + F

Two agents are priced:

- ``sequential``: the classic agent (``classic_agent.ClassicAgent``): one call per round, in
  trace order, so T = the number of calls. S is *its* prompt: its system prompt and the tools'
  JSON schemas (``classic_prompt.ClassicPrompt``), U the task's goal, R_m the text it would
  read (the tool's own text rendering, ``ToolCallRecord.text``), not the script's JSON value.
- ``parallel``: a different agent, one that issues independent calls in one turn (labelled
  with its assumption, ``ClassicEstimate.parallel_assumption``): every call is issued in the
  first round whose results it needs, i.e. call m sits at level 1 + max(level of its
  dependencies) (level 1 without any), and T = D = the deepest level. All calls of a level
  share one round: the model emits them in one message and their results come back in one
  message, so O_l = Σ O_m and R_l = Σ R_m over the calls at level l, and the formula above
  applies with T = D.

Each is given without and with prompt caching. With caching, request 0 writes S+U to the
cache; request k ≥ 1 reads the previous request's whole prompt from the cache and writes
what was appended since (O_k+R_k)::

    cache_creation = (S+U) + Σ_{m=1..T} (O_m+R_m)
    cache_read     = T(S+U) + Σ_{m=1..T} (T-m)(O_m+R_m)

(read + creation = the uncached input: every input token is one or the other). Cost units
weigh input 1.0, cache reads 0.1 and cache writes 1.25 (Anthropic's 5-minute cache prices);
output tokens are left unweighted and separate, as their price ratio depends on the model.

Dependencies: a call's ``depends_on`` lists the earlier calls (0-based indices) it needs;
``()`` means none. When it is ``None`` (unknown), the call is taken to depend on every earlier
call one of whose result values reappears as one of its argument values (JSON scalars with at
least ``MIN_VALUE_CHARS`` characters, compared whole; booleans and null never count; text that
is not JSON is one value): a classic agent must wait for a result only when data flows from it
into a later call. Values passed on transformed are missed, which lowers the parallel depth
and so the estimate (the conservative direction for a claimed saving); a value recurring by
chance raises it. ``dependencies_inferred`` says when this heuristic was used.

Not modelled, all of which make the classic figures lower bounds: text the model writes
between calls, per-call wrapper tokens of the API, cache minimum lengths and expiry. Token
counts come from the project's tokenizer (``TOKENIZER_NAME``), an approximation of the model's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from execloop.errors import ConfigError
from execloop.runtime.ledger import Usage
from execloop.runtime.models.base import ToolDefinition
from execloop.runtime.tokens import TOKENIZER_NAME, count_tokens

__all__ = [
    "CACHE_READ_WEIGHT",
    "CACHE_WRITE_WEIGHT",
    "CallTrace",
    "ClassicComparison",
    "ClassicEstimate",
    "ClassicFlow",
    "FlowRatios",
    "MIN_VALUE_CHARS",
    "PARALLEL_ASSUMPTION",
    "SEQUENTIAL_ASSUMPTION",
    "classic_flow",
    "dependency_levels",
    "estimate_classic",
    "input_cost_units",
]

CACHE_READ_WEIGHT = 0.1
CACHE_WRITE_WEIGHT = 1.25
# Shorter values (0, 1, "ok", 42) recur by chance and would invent dependencies.
MIN_VALUE_CHARS = 4
SEQUENTIAL_ASSUMPTION = "one tool call per turn, each result read before the next call"
PARALLEL_ASSUMPTION = (
    "an agent that issues every call whose inputs are known in one turn, in parallel; "
    "a call needs an earlier one when its depends_on says so"
)
_INFERRED = (
    ", or (depends_on not given) when one of that call's result values of at least "
    f"{MIN_VALUE_CHARS} characters reappears whole among its arguments"
)


class CallTrace(BaseModel):
    """One recorded tool call: what the model would have emitted and what it would have read."""

    model_config = ConfigDict(frozen=True)

    tool: str
    arguments: str = ""
    result: str = ""
    depends_on: tuple[int, ...] | None = Field(
        default=None, description="Indices of earlier calls this one needs; None: unknown."
    )
    argument_tokens: int | None = Field(
        default=None, ge=0, description="Exact count when ``arguments`` was cut; else counted."
    )
    result_tokens: int | None = Field(
        default=None, ge=0, description="Exact count when ``result`` was cut; else counted."
    )

    def emitted_tokens(self) -> int:
        """O_m: the tool name and the arguments the model would emit."""
        arguments = (
            self.argument_tokens
            if self.argument_tokens is not None
            else count_tokens(self.arguments)
        )
        return count_tokens(self.tool) + arguments

    def read_tokens(self) -> int:
        """R_m: the result the model would read back."""
        return self.result_tokens if self.result_tokens is not None else count_tokens(self.result)


class ClassicFlow(BaseModel):
    """One classic agent's cost, as the API would report it without and with prompt caching."""

    model_config = ConfigDict(frozen=True)

    rounds: int = Field(ge=0, description="Tool rounds T; requests = T + 1.")
    request_input_tokens: tuple[int, ...] = Field(
        default=(), description="Input tokens of each of the T + 1 requests, in order."
    )
    uncached: Usage
    cached: Usage = Field(description="input_tokens is 0: every input token is read or written.")
    uncached_cost_units: float
    cached_cost_units: float


class FlowRatios(BaseModel):
    """Classic / actual. None when the actual figure is 0."""

    model_config = ConfigDict(frozen=True)

    input_tokens: float | None = Field(description="All input tokens, classic uncached.")
    cost_units_uncached: float | None
    cost_units_cached: float | None


class ClassicComparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    tokenizer: str = Field(description="Counted the classic side; the actual side is as given.")
    sequential: FlowRatios
    parallel: FlowRatios


class ClassicEstimate(BaseModel):
    """The classic flow's cost for one task's tool calls. Its figures are ``tokenizer`` counts."""

    model_config = ConfigDict(frozen=True)

    tokenizer: str = TOKENIZER_NAME
    calls: int = Field(ge=0)
    system_tokens: int = Field(ge=0, description="S: system prompt and tool schemas.")
    user_tokens: int = Field(ge=0, description="U: the user message.")
    call_tokens: int = Field(ge=0, description="Σ O_m: tool names and arguments.")
    result_tokens: int = Field(ge=0, description="Σ R_m: tool results.")
    final_answer_tokens: int = Field(ge=0)
    dependencies_inferred: bool = Field(description="Some calls had depends_on=None.")
    sequential: ClassicFlow
    parallel: ClassicFlow
    sequential_assumption: str = SEQUENTIAL_ASSUMPTION
    parallel_assumption: str = Field(
        default=PARALLEL_ASSUMPTION, description="Which agent the parallel figure prices."
    )

    def compare(self, actual: Usage) -> ClassicComparison:
        """Ratios classic / actual for input tokens and for input cost units."""
        return ClassicComparison(
            tokenizer=self.tokenizer,
            sequential=_ratios(self.sequential, actual),
            parallel=_ratios(self.parallel, actual),
        )


def input_cost_units(usage: Usage) -> float:
    """Input cost in units of one uncached input token; output tokens are not included."""
    return (
        usage.input_tokens
        + CACHE_READ_WEIGHT * usage.cache_read_input_tokens
        + CACHE_WRITE_WEIGHT * usage.cache_creation_input_tokens
    )


def classic_flow(
    *,
    system_tokens: int,
    user_tokens: int,
    rounds: Sequence[tuple[int, int]],
    final_answer_tokens: int = 0,
) -> ClassicFlow:
    """Price T = len(rounds) rounds, each given as (O, R) token counts, by the module formulas."""
    prefix = system_tokens + user_tokens
    t = len(rounds)
    appended = [o + r for o, r in rounds]
    # Round m's tokens (1-based, i = m-1) are in the prompts of requests m..T (T+1-m of them);
    # request m writes them to the cache and requests m+1..T (T-m of them) read them.
    # request k re-sends the prefix and every round before it: its input grows with k
    requests = [prefix + sum(appended[:k]) for k in range(t + 1)]
    input_tokens = (t + 1) * prefix + sum((t - i) * a for i, a in enumerate(appended))
    cache_read = t * prefix + sum((t - 1 - i) * a for i, a in enumerate(appended))
    output_tokens = sum(o for o, _ in rounds) + final_answer_tokens
    uncached = Usage(input_tokens=input_tokens, output_tokens=output_tokens, requests=t + 1)
    cached = Usage(
        output_tokens=output_tokens,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=prefix + sum(appended),
        requests=t + 1,
    )
    return ClassicFlow(
        rounds=t,
        request_input_tokens=tuple(requests),
        uncached=uncached,
        cached=cached,
        uncached_cost_units=input_cost_units(uncached),
        cached_cost_units=input_cost_units(cached),
    )


def dependency_levels(calls: Sequence[CallTrace]) -> list[int]:
    """Level (1-based round of a parallel agent) of each call; see the module docstring."""
    levels: list[int] = []
    results: list[set[str]] = []  # each result's values, parsed once
    for index, call in enumerate(calls):
        needs = call.depends_on
        if needs is None:
            results.extend(_values(c.result) for c in calls[len(results) : index])
            wanted = _values(call.arguments)
            needs = tuple(j for j in range(index) if not wanted.isdisjoint(results[j]))
        bad = [j for j in needs if not 0 <= j < index]
        if bad:
            raise ConfigError(
                f"call {index} ({call.tool}) depends on {bad}: depends_on must name earlier "
                f"calls by their 0-based index (0..{index - 1})"
            )
        levels.append(1 + max((levels[j] for j in needs), default=0))
    return levels


def estimate_classic(
    *,
    system: str,
    user: str,
    calls: Sequence[CallTrace],
    final_answer: str = "",
    tools: Sequence[ToolDefinition] = (),
) -> ClassicEstimate:
    """The classic flow's cost for ``calls``, counted by the project's tokenizer; S is
    ``system`` plus the ``tools`` definitions every request carries."""
    system_tokens = count_tokens(system) + sum(tool.tokens for tool in tools)
    user_tokens = count_tokens(user)
    final_tokens = count_tokens(final_answer)
    sequential = [(c.emitted_tokens(), c.read_tokens()) for c in calls]
    levels = dependency_levels(calls)
    inferred = any(c.depends_on is None for c in calls)
    parallel = [(0, 0)] * max(levels, default=0)
    for level, (o, r) in zip(levels, sequential, strict=True):
        po, pr = parallel[level - 1]
        parallel[level - 1] = (po + o, pr + r)

    def flow(rounds: list[tuple[int, int]]) -> ClassicFlow:
        return classic_flow(
            system_tokens=system_tokens,
            user_tokens=user_tokens,
            rounds=rounds,
            final_answer_tokens=final_tokens,
        )

    return ClassicEstimate(
        calls=len(calls),
        system_tokens=system_tokens,
        user_tokens=user_tokens,
        call_tokens=sum(o for o, _ in sequential),
        result_tokens=sum(r for _, r in sequential),
        final_answer_tokens=final_tokens,
        dependencies_inferred=inferred,
        sequential=flow(sequential),
        parallel=flow(parallel),
        parallel_assumption=PARALLEL_ASSUMPTION + (_INFERRED if inferred else ""),
    )


def _ratio(classic: float, actual: float) -> float | None:
    return classic / actual if actual else None


def _ratios(flow: ClassicFlow, actual: Usage) -> FlowRatios:
    actual_units = input_cost_units(actual)
    return FlowRatios(
        input_tokens=_ratio(flow.uncached.total_input_tokens, actual.total_input_tokens),
        cost_units_uncached=_ratio(flow.uncached_cost_units, actual_units),
        cost_units_cached=_ratio(flow.cached_cost_units, actual_units),
    )


def _values(text: str) -> set[str]:
    """The distinctive scalar values in ``text`` (JSON leaves, or the whole text if not JSON)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = text.strip()
    return {value for value in _leaves(data) if len(value) >= MIN_VALUE_CHARS}


def _leaves(data: object) -> Iterator[str]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _leaves(value)
    elif isinstance(data, list):
        for value in data:
            yield from _leaves(value)
    elif isinstance(data, str):
        yield data
    elif isinstance(data, int | float) and not isinstance(data, bool):
        yield json.dumps(data)
