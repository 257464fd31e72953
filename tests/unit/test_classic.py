"""The classic-flow estimate: hand-computed cases, parallel depth, caching, quadratic growth."""

from __future__ import annotations

import itertools
import json

import pytest

from execloop.errors import ConfigError
from execloop.runtime.classic import (
    CallTrace,
    ClassicEstimate,
    classic_flow,
    dependency_levels,
    estimate_classic,
    input_cost_units,
)
from execloop.runtime.ledger import Usage
from execloop.runtime.models.base import ToolDefinition
from execloop.runtime.task import Result, TaskStatus
from execloop.runtime.tokens import TOKENIZER_NAME, count_tokens

S, U = 100, 20  # system + tool schemas, user message


def _by_request(prefix: int, rounds: list[tuple[int, int]]) -> int:
    """Reference: simulate the requests one by one and add up their prompt sizes."""
    prompt, total = prefix, prefix
    for o, r in rounds:
        prompt += o + r
        total += prompt
    return total


def test_no_calls_is_one_request() -> None:
    flow = classic_flow(system_tokens=S, user_tokens=U, rounds=[], final_answer_tokens=5)
    assert flow.rounds == 0
    assert flow.uncached == Usage(input_tokens=120, output_tokens=5, requests=1)
    assert flow.cached == Usage(output_tokens=5, cache_creation_input_tokens=120, requests=1)
    assert flow.uncached_cost_units == 120
    assert flow.cached_cost_units == 150  # 1.25 x 120


def test_one_call() -> None:
    flow = classic_flow(system_tokens=S, user_tokens=U, rounds=[(10, 50)], final_answer_tokens=7)
    # (T+1)(S+U) + T(O+R) = 2*120 + 60; output = O + F
    assert flow.uncached == Usage(input_tokens=300, output_tokens=17, requests=2)
    # request 0 writes 120; request 1 reads those 120 and writes the 60 appended
    assert flow.cached == Usage(
        output_tokens=17, cache_read_input_tokens=120, cache_creation_input_tokens=180, requests=2
    )
    assert flow.cached_cost_units == pytest.approx(12 + 225)


def test_three_calls() -> None:
    rounds = [(10, 50), (20, 30), (5, 100)]
    flow = classic_flow(system_tokens=S, user_tokens=U, rounds=rounds)
    # 4*120 + 3*60 + 2*50 + 1*105; the requests' prompts are 120, 180, 230, 335
    assert flow.uncached.input_tokens == 865 == _by_request(120, rounds)
    assert flow.request_input_tokens == (120, 180, 230, 335)  # the report's per-turn plot
    assert flow.uncached.output_tokens == 35
    assert flow.uncached.requests == 4
    # reads: 3*120 + 2*60 + 1*50 + 0*105; writes: 120 + 60 + 50 + 105
    assert flow.cached.cache_read_input_tokens == 530
    assert flow.cached.cache_creation_input_tokens == 335
    assert flow.cached.input_tokens == 0
    assert flow.cached.total_input_tokens == flow.uncached.total_input_tokens
    assert flow.cached_cost_units == pytest.approx(0.1 * 530 + 1.25 * 335)
    assert flow.uncached_cost_units == 865


def test_estimate_counts_with_the_tokenizer_and_names_it() -> None:
    calls = [
        CallTrace(
            tool="search", arguments='{"q": "lora rank"}', result="rank 8 works", depends_on=()
        ),
        CallTrace(tool="fetch", arguments='{"url": "https://x.test/a"}', result="page " * 40),
    ]
    estimate = estimate_classic(
        system="You are careful.", user="Find it.", calls=calls, final_answer="8"
    )
    assert estimate.tokenizer == TOKENIZER_NAME
    rounds = [
        (count_tokens(c.tool) + count_tokens(c.arguments), count_tokens(c.result)) for c in calls
    ]
    prefix = count_tokens("You are careful.") + count_tokens("Find it.")
    assert estimate.sequential.rounds == 2
    assert estimate.sequential.uncached.input_tokens == _by_request(prefix, rounds)
    assert estimate.sequential.uncached.output_tokens == sum(o for o, _ in rounds) + 1
    assert estimate.call_tokens == sum(o for o, _ in rounds)
    assert estimate.result_tokens == sum(r for _, r in rounds)
    assert estimate.compare(Usage(input_tokens=10)).tokenizer == TOKENIZER_NAME


def test_parallel_depth_of_a_diamond_and_how_rounds_aggregate() -> None:
    calls = [
        CallTrace(tool="a", arguments="start", result="alpha " * 10, depends_on=()),
        CallTrace(tool="b", arguments="left", result="beta " * 20, depends_on=(0,)),
        CallTrace(tool="c", arguments="right", result="gamma " * 30, depends_on=(0,)),
        CallTrace(tool="d", arguments="join", result="delta", depends_on=(1, 2)),
    ]
    assert dependency_levels(calls) == [1, 2, 2, 3]
    estimate = estimate_classic(system="sys", user="go", calls=calls)
    assert not estimate.dependencies_inferred
    assert estimate.sequential.rounds == 4
    assert estimate.parallel.rounds == 3
    o = [count_tokens(c.tool) + count_tokens(c.arguments) for c in calls]
    r = [count_tokens(c.result) for c in calls]
    rounds = [(o[0], r[0]), (o[1] + o[2], r[1] + r[2]), (o[3], r[3])]  # b and c share round 2
    prefix = count_tokens("sys") + count_tokens("go")
    assert estimate.parallel.uncached.input_tokens == _by_request(prefix, rounds)
    assert estimate.parallel.uncached.output_tokens == estimate.sequential.uncached.output_tokens
    assert estimate.parallel.uncached.requests == 4
    assert estimate.parallel.uncached.input_tokens < estimate.sequential.uncached.input_tokens


def test_unknown_dependencies_are_inferred_from_values_flowing_into_arguments() -> None:
    calls = [
        CallTrace(
            tool="find_user", arguments='{"name": "ada"}', result='{"id": "user-8812", "n": 42}'
        ),
        CallTrace(tool="orders", arguments='{"user": "user-8812"}', result="[]"),
        CallTrace(
            tool="weather", arguments='{"days": 42}', result="sunny and warm"
        ),  # 42: too short
        CallTrace(tool="echo", arguments='["sunny and warm"]', result="ok"),  # plain-text result
    ]
    assert dependency_levels(calls) == [1, 2, 1, 2]
    estimate = estimate_classic(system="s", user="u", calls=calls)
    assert estimate.dependencies_inferred
    assert estimate.parallel.rounds == 2


def test_explicit_empty_dependencies_override_inference() -> None:
    calls = [
        CallTrace(tool="a", arguments="x", result="shared-value"),
        CallTrace(tool="b", arguments="shared-value", result="y", depends_on=()),
    ]
    assert dependency_levels(calls) == [1, 1]


@pytest.mark.parametrize("bad", [(1,), (5,), (-1,)])
def test_depends_on_must_name_earlier_calls(bad: tuple[int, ...]) -> None:
    calls = [CallTrace(tool="a"), CallTrace(tool="b", depends_on=bad)]
    with pytest.raises(ConfigError, match="earlier calls"):
        dependency_levels(calls)


def test_cost_grows_with_the_square_of_the_calls() -> None:
    def cost(t: int) -> tuple[int, float]:
        flow = classic_flow(system_tokens=50, user_tokens=10, rounds=[(30, 300)] * t)
        return flow.uncached.input_tokens, flow.cached_cost_units

    costs = [cost(t) for t in range(30)]
    assert all(a < b for (a, _), (b, _) in itertools.pairwise(costs))
    assert all(a < b for (_, a), (_, b) in itertools.pairwise(costs))
    small, large = cost(1000), cost(2000)
    assert 3.98 < large[0] / small[0] < 4.0
    assert 3.9 < large[1] / small[1] < 4.0  # the cache writes grow only linearly


def test_compare_with_actual_usage() -> None:
    estimate = estimate_classic(
        system="s " * 50, user="u", calls=[CallTrace(tool="t", result="r " * 500)]
    )
    actual = Usage(input_tokens=100, cache_read_input_tokens=1000, cache_creation_input_tokens=200)
    assert input_cost_units(actual) == pytest.approx(100 + 100 + 250)
    ratios = estimate.compare(actual)
    flow = estimate.sequential
    assert ratios.sequential.input_tokens == pytest.approx(flow.uncached.total_input_tokens / 1300)
    assert ratios.sequential.cost_units_cached == pytest.approx(flow.cached_cost_units / 450)
    assert ratios.sequential.cost_units_uncached == pytest.approx(flow.uncached_cost_units / 450)
    assert estimate.compare(Usage()).parallel.input_tokens is None


def test_estimate_travels_in_the_result_json() -> None:
    estimate = estimate_classic(system="s", user="u", calls=[CallTrace(tool="t", arguments="a")])
    result = Result(task_id="t1", status=TaskStatus.PASSED, usage_classic_estimate=estimate)
    data = json.loads(result.model_dump_json())
    assert data["usage_classic_estimate"]["tokenizer"] == TOKENIZER_NAME
    assert data["usage_classic_estimate"]["sequential"]["cached"]["cache_read_input_tokens"] >= 0
    again = Result.model_validate_json(result.model_dump_json())
    assert isinstance(again.usage_classic_estimate, ClassicEstimate)
    assert again.usage_classic_estimate == estimate


def test_public_names_are_sorted_and_resolve() -> None:
    from execloop.runtime import classic

    assert classic.__all__ == sorted(classic.__all__)
    assert all(hasattr(classic, name) for name in classic.__all__)


def test_the_classic_prompt_counts_its_tool_definitions_and_labels_the_parallel_agent() -> None:
    tool = ToolDefinition(
        name="lookup",
        description="Look a key up.",
        input_schema={"type": "object", "properties": {"key": {"type": "string"}}},
    )
    calls = [CallTrace(tool="lookup", arguments='{"key":"k"}', result="value-1")]
    bare = estimate_classic(system="Use the tools.", user="Find k.", calls=calls)
    with_tools = estimate_classic(
        system="Use the tools.", user="Find k.", calls=calls, tools=[tool]
    )
    assert with_tools.system_tokens == bare.system_tokens + tool.tokens
    assert tool.tokens == count_tokens(json.dumps(tool.model_dump(), separators=(",", ":")))
    assert "one tool call per turn" in with_tools.sequential_assumption
    assert "in parallel" in with_tools.parallel_assumption
    assert "reappears" in with_tools.parallel_assumption  # depends_on was inferred: said so
    given = [CallTrace(tool="lookup", arguments="{}", result="x", depends_on=())]
    assert "reappears" not in estimate_classic(system="", user="", calls=given).parallel_assumption


def test_a_sub_agent_prices_the_classic_prompt_the_task_gives() -> None:
    from execloop.runtime.bridge import ToolRegistry
    from execloop.runtime.classic_prompt import CLASSIC_SYSTEM_PROMPT, ClassicPrompt
    from execloop.runtime.loop import SubAgent
    from execloop.runtime.task import Task
    from execloop.testing import ScriptedModel

    registry = ToolRegistry()

    @registry.tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    def estimate(task: Task) -> ClassicEstimate:
        agent = SubAgent(task, model=ScriptedModel(["x"]), registry=registry)
        return agent.classic_estimate("")

    given = estimate(Task(goal="Find k.", tools=("lookup",), classic_system="Be brief."))
    default = estimate(Task(goal="Find k.", tools=("lookup",)))
    schemas = ClassicPrompt.for_tools([registry.get("lookup")], system="Be brief.").tools
    assert given.system_tokens == count_tokens("Be brief.") + schemas[0].tokens
    assert default.system_tokens == count_tokens(CLASSIC_SYSTEM_PROMPT) + schemas[0].tokens
    assert given.user_tokens == count_tokens("Find k.")  # the goal, not code mode's task text
