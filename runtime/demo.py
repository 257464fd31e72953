"""The keyless demo's tasks: every built-in skill's worked example, plus one task that uses
host tools through the bridge so the ledger has calls to price. Every model here is a
``ScriptedModel``: its replies are replayed, not generated."""

from __future__ import annotations

import uuid

from execloop.runtime.bridge import ToolRegistry
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.models import ScriptedModel
from execloop.runtime.models.base import Model
from execloop.runtime.skills import list_skills
from execloop.runtime.task import Task

__all__ = ["TOOLS_SCRIPT", "demo_registry", "demo_tasks"]

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


def demo_tasks() -> tuple[list[Task], dict[str, Model]]:
    """The tasks and, per task id, the scripted model that answers it."""
    tasks: list[Task] = []
    models: dict[str, Model] = {}
    for skill in list_skills():
        for example in skill.load_examples():
            task = Task(
                id=f"{skill.name}-{example.name}-{uuid.uuid4().hex[:6]}",
                goal=example.goal,
                skill=skill.name,
                inputs=tuple(example.folder / name for name in example.files),
                checks=example.checks,
            )
            tasks.append(task)
            models[task.id] = ScriptedModel(
                [example.solution_code()], name=f"{skill.name}/{example.name}"
            )
    tools_task = Task(
        id=f"inventory-tools-{uuid.uuid4().hex[:6]}",
        goal="Compute the inventory value (stock times price of sku-000..sku-039) with tools.",
        tools=("stock", "price"),
        checks=(ExpressionCheck(expr=f'result["inventory_value"] == {_inventory_value()}'),),
    )
    tasks.append(tools_task)
    models[tools_task.id] = ScriptedModel([TOOLS_SCRIPT], name="inventory-tools")
    return tasks, models
