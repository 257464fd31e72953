"""Property-based: any JSON given as a Task is either a Task or a pydantic ValidationError
(a ValueError naming the field), never another exception."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from execloop.errors import ConfigError
from execloop.runtime.task import Budget, Task
from execloop.sandboxes.spec import SandboxSpec, coerce_spec

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = ["id", "goal", "skill", "inputs", "checks", "sandbox", "tools", "budget", "extra"]
CHECK = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(
            ["expression", "exit_status", "json_schema", "pytest", "dataset", "x"]
        )
    },
    optional={"expr": st.text(max_size=30), "path": st.text(max_size=20), "name": JSON},
)
SANDBOX = st.dictionaries(
    st.sampled_from(["backend", "memory", "cpus", "pids", "timeout_s", "env", "gpus", "image"]),
    JSON,
    max_size=4,
)


def _accepts_or_explains(data: Any) -> None:
    try:
        task = Task.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        assert errors and all(error["loc"] or error["msg"] for error in errors)
        return
    assert task.goal.strip()
    assert task.budget.max_attempts >= 1


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6))
def test_arbitrary_task_json(data: dict[str, Any]) -> None:
    _accepts_or_explains(data)


@settings(max_examples=300, deadline=None)
@given(
    goal=st.text(max_size=40),
    checks=st.lists(CHECK, max_size=3),
    sandbox=SANDBOX,
    budget=st.dictionaries(
        st.sampled_from(["max_attempts", "max_tokens", "max_wall_time_s"]), SCALARS, max_size=3
    ),
)
def test_structured_task_json(
    goal: str, checks: list[Any], sandbox: dict[str, Any], budget: dict[str, Any]
) -> None:
    _accepts_or_explains({"goal": goal, "checks": checks, "sandbox": sandbox, "budget": budget})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_task_json(raw: bytes) -> None:
    with contextlib.suppress(ValidationError):
        Task.model_validate_json(raw)


@settings(max_examples=200, deadline=None)
@given(st.floats() | st.integers(min_value=-(2**70), max_value=2**70))
def test_budgets_are_finite_and_positive(value: float) -> None:
    for field in ("max_attempts", "max_tokens", "max_wall_time_s"):
        try:
            budget = Budget.model_validate({field: value})
        except ValidationError:
            continue
        number = getattr(budget, field)
        assert number > 0 and number == number and number != float("inf")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from([*SandboxSpec.model_fields, "unknown"]), JSON, max_size=5)
    | JSON
)
def test_any_sandbox_spec_is_a_spec_or_one_config_error_naming_fields(data: Any) -> None:
    try:
        spec = coerce_spec(data)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(("invalid sandbox spec: ", "spec must be a SandboxSpec"))
        if isinstance(data, dict) and data:
            assert any(name in message for name in [*data, "spec:"]), message
        return
    assert isinstance(spec, SandboxSpec)
    assert spec.output_limit_bytes >= spec.max_output_bytes
