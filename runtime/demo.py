"""The keyless demo's tasks: every built-in skill's worked example (the training skills' run in
``execloop demo --pipeline``, in a train image), plus one task that uses
host tools through the bridge so the ledger has calls to price. Every model here is a
``ScriptedModel``: its replies are replayed, not generated.

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
from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.checks import CheckSpec, ExpressionCheck
from execloop.runtime.models import ScriptedModel
from execloop.runtime.models.base import Model
from execloop.runtime.skills import list_skills
from execloop.runtime.task import Task

__all__ = ["TOOLS_SCRIPT", "demo_model", "demo_registry", "demo_tasks"]

_STOCK = [(n * 7) % 23 for n in range(40)]
_CATALOGUE: dict[str, dict[str, object]] = {
    f"sku-{n:03d}": {"name": f"part {n}", "stock": units, "notes": "lorem ipsum " * 30}
    for n, units in enumerate(_STOCK)
}

# What a sub-agent writes in code mode: 80 tool calls in a loop; only the total goes back.
TOOLS_SCRIPT = """\
import json
from execloop_tools import price, stock
value = 0.0
for n in range(40):
    sku = f"sku-{n:03d}"
    value += stock(sku=sku)["stock"] * price(sku=sku)
json.dump({"inventory_value": round(value, 2)}, open("result.json", "w"))
print("inventory value", round(value, 2))
"""


def demo_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def stock(sku: str) -> dict[str, object]:
        """The warehouse record of one SKU (name, units in stock, notes)."""
        return _CATALOGUE[sku]

    @registry.tool
    def price(sku: str) -> float:
        """The unit price of one SKU in euros."""
        return round(1.5 + int(sku.split("-")[1]) * 0.25, 2)

    return registry


def _inventory_value() -> float:
    return round(sum(units * (1.5 + n * 0.25) for n, units in enumerate(_STOCK)), 2)


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
    found.append(
        _Example(
            key="inventory-tools",
            goal="Compute the inventory value (stock times price of sku-000..sku-039) with tools.",
            script=TOOLS_SCRIPT,
            checks=(ExpressionCheck(expr=f'result["inventory_value"] == {_inventory_value()}'),),
            tools=("stock", "price"),
        )
    )
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


def demo_model(task: Task) -> Model:
    """The scripted model that answers a demo task, rebuilt from the task's id and goal."""
    example = _examples().get(task.id.rpartition("-")[0])
    if example is None or example.goal != task.goal:
        raise ConfigError(f"task {task.id!r} is not one of the demo's tasks")
    return ScriptedModel([example.script], name=example.key)
