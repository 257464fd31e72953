"""The keyless demo's multi-tool tasks: a small shop's host tools (stock, unit costs, sale
prices, customers, orders, and two that change data: reorder and set_price) and five tasks that
call them 5 to 20 times each, lookups chained into each other and read-modify-write loops, as
agents' real tasks do. Each task has the script a sub-agent would write in code mode and the
answer it must reach.

Results carry realistic bulk (notes, addresses, line items): what a classic agent would read back
into its context after every call, and what code mode keeps in the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from execloop.runtime.bridge import ToolRegistry

__all__ = ["ToolTask", "demo_registry", "tool_tasks"]

SKUS = 10
_NOTE = "Handle with care; stored in aisle 4, shelf B. Supplier ships Mon/Thu. " * 3
_CUSTOMERS = {"ana@example.com": "C-0042", "bo@example.com": "C-0007", "cy@example.com": "C-0113"}


def _stock(n: int) -> int:
    return (n * 7) % 23


def _cost(n: int) -> float:
    return round(1.5 + n * 0.25, 2)


def _price(n: int) -> float:
    return round(2.0 + n * 0.4, 2)


def _orders(customer_id: str) -> list[str]:
    return [f"O-{customer_id[2:]}-{k}" for k in range(1, 4)]


def _order(order_id: str) -> dict[str, object]:
    number = int(order_id.replace("O-", "").replace("-", ""))
    return {
        "order_id": order_id,
        "total": round(10 + (number * 37) % 90 + 0.99, 2),
        "late": number % 3 == 0,
        "ship_to": "Long Street 12, 4th floor, 8000 Aarhus, Denmark",
        "lines": [{"sku": f"sku-{(number + i) % SKUS:03d}", "qty": 1 + i} for i in range(3)],
        "notes": _NOTE,
    }


def demo_registry() -> ToolRegistry:
    """The shop's tools; reorders and price changes live in this registry's memory."""
    registry = ToolRegistry()
    prices = {f"sku-{n:03d}": _price(n) for n in range(SKUS)}

    @registry.tool
    def stock(sku: str) -> dict[str, object]:
        """The warehouse record of one SKU (name, units in stock, notes)."""
        n = int(sku.split("-")[1])
        return {"sku": sku, "name": f"part {n}", "stock": _stock(n), "notes": _NOTE}

    @registry.tool
    def unit_cost(sku: str) -> float:
        """What one unit of a SKU cost us, in euros."""
        return _cost(int(sku.split("-")[1]))

    @registry.tool
    def price(sku: str) -> float:
        """The sale price of one unit of a SKU, in euros."""
        return prices[sku]

    @registry.tool
    def set_price(sku: str, euros: float) -> dict[str, object]:
        """Change a SKU's sale price; returns the old and the new price."""
        old, prices[sku] = prices[sku], euros
        return {"sku": sku, "old": old, "new": euros}

    @registry.tool
    def reorder(sku: str, qty: int) -> dict[str, object]:
        """Place a purchase order with the supplier; returns the order."""
        return {"po": f"PO-{sku}-{qty}", "sku": sku, "qty": qty, "eta_days": 3, "notes": _NOTE}

    @registry.tool
    def find_customer(email: str) -> dict[str, object]:
        """The customer record for an e-mail address."""
        return {"customer_id": _CUSTOMERS[email], "email": email, "tier": "gold", "notes": _NOTE}

    @registry.tool
    def orders(customer_id: str) -> list[str]:
        """The ids of a customer's open orders."""
        return _orders(customer_id)

    @registry.tool
    def order(order_id: str) -> dict[str, object]:
        """One order: total in euros, whether it is late, address, lines, notes."""
        return _order(order_id)

    return registry


@dataclass(frozen=True)
class ToolTask:
    key: str
    goal: str
    script: str
    check: str  # an expression over result.json
    tools: tuple[str, ...]


def _inventory_value() -> float:
    return round(sum(_stock(n) * _cost(n) for n in range(SKUS)), 2)


def tool_tasks() -> list[ToolTask]:
    low = {f"sku-{n:03d}": 20 - _stock(n) for n in range(6) if _stock(n) < 10}
    ana = round(sum(float(str(_order(o)["total"])) for o in _orders("C-0042")), 2)
    late = sorted(o for c in _CUSTOMERS.values() for o in _orders(c) if _order(o)["late"])
    raised = {f"sku-{n:03d}": round(_price(n) * 1.1, 2) for n in range(5)}
    return [
        ToolTask(
            key="inventory-tools",
            goal=f"Compute the inventory value at cost (units in stock times unit cost of "
            f"sku-000..sku-{SKUS - 1:03d}) with tools.",
            script=f"""\
import json
from execloop_tools import stock, unit_cost
value = 0.0
for n in range({SKUS}):
    sku = f"sku-{{n:03d}}"
    value += stock(sku=sku)["stock"] * unit_cost(sku=sku)
json.dump({{"inventory_value": round(value, 2)}}, open("result.json", "w"))
""",
            check=f'result["inventory_value"] == {_inventory_value()}',
            tools=("stock", "unit_cost"),
        ),
        ToolTask(
            key="restock-low",
            goal="Reorder every SKU among sku-000..sku-005 with fewer than 10 units in stock, "
            "back up to 20 units; report what was ordered.",
            script="""\
import json
from execloop_tools import reorder, stock
ordered = {}
for n in range(6):
    sku = f"sku-{n:03d}"
    units = stock(sku=sku)["stock"]
    if units < 10:
        ordered[sku] = reorder(sku=sku, qty=20 - units)["qty"]
json.dump({"ordered": ordered}, open("result.json", "w"))
""",
            check=f'result["ordered"] == {low!r}',
            tools=("stock", "reorder"),
        ),
        ToolTask(
            key="customer-spend",
            goal="How much do ana@example.com's open orders add up to, in euros?",
            script="""\
import json
from execloop_tools import find_customer, order, orders
customer = find_customer(email="ana@example.com")["customer_id"]
spent = sum(order(order_id=o)["total"] for o in orders(customer_id=customer))
json.dump({"spent": round(spent, 2)}, open("result.json", "w"))
""",
            check=f'result["spent"] == {ana}',
            tools=("find_customer", "orders", "order"),
        ),
        ToolTask(
            key="price-rise",
            goal="Raise the sale prices of sku-000..sku-004 by 10% (rounded to cents) and "
            "report the new prices.",
            script="""\
import json
from execloop_tools import price, set_price
new = {}
for n in range(5):
    sku = f"sku-{n:03d}"
    new[sku] = set_price(sku=sku, euros=round(price(sku=sku) * 1.1, 2))["new"]
json.dump({"new_prices": new}, open("result.json", "w"))
""",
            check=f'result["new_prices"] == {raised!r}',
            tools=("price", "set_price"),
        ),
        ToolTask(
            key="late-orders",
            goal="List the late orders of our three customers (C-0042, C-0007, C-0113).",
            script="""\
import json
from execloop_tools import order, orders
late = [o for c in ("C-0042", "C-0007", "C-0113") for o in orders(customer_id=c)
        if order(order_id=o)["late"]]
json.dump({"late": sorted(late)}, open("result.json", "w"))
""",
            check=f'result["late"] == {late!r}',
            tools=("orders", "order"),
        ),
    ]
