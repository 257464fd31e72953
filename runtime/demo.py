"""The keyless demo's tasks: a realistic mix, mostly multi-tool tasks (the token bench's shop
tasks of 6 to 20 calls, ``benchmarks.suite``: lookups chained and read-modify-write, through the
bridge to one shop's host tools, so the ledger has calls to price), plus every built-in skill's
worked example (no tool calls; the training skills' run in ``execloop demo --pipeline``, in a
train image). Every model here is a ``ScriptedModel``: its replies are replayed, not generated.

A demo task's id is ``<key>-<random>``: the key names its example, so ``demo_model`` rebuilds
the scripted model of any demo task from the task alone, and a demo re-run on the same
database resumes the tasks of a demo that was killed.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path

from execloop.errors import ConfigError
from execloop.runtime.benchmarks.suite import SUITE, Shop, shop_registry
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.checks import CheckSpec, ExpressionCheck
from execloop.runtime.models import ScriptedModel
from execloop.runtime.models.base import Model
from execloop.runtime.skills import list_skills
from execloop.runtime.task import Task

__all__ = ["demo_mix", "demo_model", "demo_registry", "demo_tasks"]

# The suite's tasks of 5 or more calls: 6, 9, 12, 17 and 20 calls.
_SHOP_TASKS = ("notes_fix", "delayed_review", "low_stock_audit", "customer_report", "price_update")


def demo_registry(task: Task) -> ToolRegistry:
    """The shop's tools for ``task`` on a fresh ``Shop`` of its own (a broker's registry
    factory): read-modify-write tasks, and a crashed demo's resumed twin of one, never share."""
    return shop_registry(Shop())


@dataclass(frozen=True)
class _Example:
    """What a demo task is made of; its key is the stable part of the task's id."""

    key: str
    goal: str
    script: str
    skill: str | None = None
    inputs: tuple[Path, ...] = ()
    checks: tuple[CheckSpec, ...] = ()
    tools: tuple[str, ...] = ()


@functools.cache
def _examples() -> dict[str, _Example]:
    found = [
        _Example(
            key=f"{skill.name}.{example.name}",
            goal=example.goal,
            script=example.solution_code(),
            skill=skill.name,
            inputs=tuple(example.folder / name for name in example.files),
            checks=example.checks,
        )
        for skill in list_skills()
        if skill.sandbox.image is None  # the training skills run in `execloop demo --pipeline`
        for example in skill.load_examples()
    ]
    tools = [
        _Example(
            key=task.name,
            goal=task.goal,
            script=task.script,
            checks=(ExpressionCheck(expr=task.expect),),
            tools=task.tools,
        )
        for task in SUITE
        if task.name in _SHOP_TASKS
    ]
    found = [*tools, *found]  # the tool tasks first: they are most of the mix
    return {example.key: example for example in found}


def demo_tasks() -> list[Task]:
    """One fresh task per example (ids ``<key>-<random>``, new for every demo run)."""
    return [
        Task(
            id=f"{example.key}-{uuid.uuid4().hex[:6]}",
            goal=example.goal,
            skill=example.skill,
            inputs=example.inputs,
            checks=example.checks,
            tools=example.tools,
        )
        for example in _examples().values()
    ]


def demo_mix() -> str:
    """What the demo runs, in words, for its banner."""
    examples = _examples().values()
    tools = sum(bool(example.tools) for example in examples)
    return (
        f"{len(examples)} tasks: {tools} call a shop's host tools (6 to 20 calls each, lookups "
        f"chained and read-modify-write), {len(examples) - tools} are the skills' worked "
        "examples (no tool calls)"
    )


def demo_model(task: Task) -> Model:
    """The scripted model that answers a demo task, rebuilt from the task's id and goal."""
    example = _examples().get(task.id.rpartition("-")[0])
    if example is None or example.goal != task.goal:
        raise ConfigError(f"task {task.id!r} is not one of the demo's tasks")
    return ScriptedModel([example.script], name=example.key)
