"""The task suite of ``execloop bench tokens``: a small shop's tools and eight tasks of 1 to 20
tool calls (1, 2, 4, 6, 9, 12, 17, 20), read-modify-write chains among them.

Every flow gets a fresh ``Shop`` (deterministic data), so the tools really run and each flow's
effects are judged by the same ``check`` on its own shop and its own answer. Each task carries
the script a code-mode model would submit (its answer in ``result.json``); in replay the classic
agent follows the calls that script made (the recorded plan), so both flows do the same work.
The keyless demo (``execloop.runtime.demo``) runs the tasks of 5 or more calls on one shop.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from execloop.runtime.bridge.registry import ToolRegistry
from execloop.runtime.bridge.tool import ToolFailure

__all__ = ["BenchTask", "SUITE", "Shop", "shop_registry"]

_CUSTOMERS = ("acme", "globex", "initech")
_STATUSES = ("delivered", "shipped", "delivered", "shipped", "delivered")
_CITIES = (("Lyon", "FR"), ("Leeds", "GB"), ("Porto", "PT"), ("Graz", "AT"), ("Turku", "FI"))
_WORDS = ("steel", "oak", "matte", "compact", "outdoor", "classic", "wireless", "heavy-duty")
_NOUNS = ("bracket", "lamp", "hinge", "shelf", "cable", "valve", "clamp", "panel", "fan", "hook")


@dataclass
class Shop:
    """A shop's state: products, orders, files. ``Shop()`` is always the same data."""

    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(11)
        for n in range(1, 21):
            sku = f"SKU-{n:03d}"
            name = f"{rng.choice(_WORDS)} {rng.choice(_NOUNS)}"
            self.products[sku] = {
                "sku": sku,
                "name": name,
                "category": rng.choice(("hardware", "lighting", "fittings")),
                "price": round(rng.uniform(4, 90), 2),
                # SKU-001..008: every other one runs low (the audit task's four)
                "stock": rng.randint(2, 9) if n <= 8 and n % 2 else rng.randint(12, 140),
                "warehouse": rng.choice(("north", "south")),
                "description": f"A {name} for trade and home use; ships in 2-3 days.",
            }
        number = 1000
        for customer in _CUSTOMERS:
            for k in range(12):
                number += 1
                # acme has five processing orders, three of them older than the 10th
                status = "processing" if customer == "acme" and k < 5 else _STATUSES[k % 5]
                day = (2, 4, 9, 12, 20)[k] if customer == "acme" and k < 5 else 1 + (k * 7) % 28
                self.orders[f"O-{number}"] = self._order(rng, f"O-{number}", customer, status, day)
        # The shop's own documents carry TODO markers: the data the notes_fix task edits.
        for name in ("install", "returns", "warranty"):
            self.files[f"docs/{name}.md"] = (
                f"# {name.title()}\n\nTODO: check the {name} steps with the warehouse.\n"
                f"Our {name} policy applies to every order shipped from the north or south "
                "warehouse. Keep the receipt.\n\nTODO: add the contact address.\n"
            )
        self.files["templates/report.md"] = "# Customer report\n\nOne line per recent order.\n"

    def _order(
        self, rng: random.Random, order_id: str, customer: str, status: str, day: int
    ) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        for _ in range(rng.randint(2, 4)):
            sku = f"SKU-{rng.randint(1, 20):03d}"
            items.append({"sku": sku, "qty": rng.randint(1, 6), "unit_price": 0.0})
        for item in items:
            item["name"] = self.products[item["sku"]]["name"]
            item["unit_price"] = self.products[item["sku"]]["price"]
        city, country = rng.choice(_CITIES)
        return {
            "order_id": order_id,
            "customer": customer,
            "date": f"2026-11-{day:02d}",
            "status": status,
            "items": items,
            "total": round(sum(i["qty"] * i["unit_price"] for i in items), 2),
            "shipping": {"name": f"{customer.title()} Ltd", "city": city, "country": country},
            "notes": "",
        }


def shop_registry(shop: Shop) -> ToolRegistry:
    """The shop's tools, working on ``shop``."""
    registry = ToolRegistry()

    def product(sku: str) -> dict[str, Any]:
        if sku not in shop.products:
            raise ToolFailure(f"no product {sku}")
        return shop.products[sku]

    def order(order_id: str) -> dict[str, Any]:
        if order_id not in shop.orders:
            raise ToolFailure(f"no order {order_id}")
        return shop.orders[order_id]

    @registry.tool
    def list_orders(customer: str) -> list[dict[str, Any]]:
        """A customer's orders: id, date, status and total of each."""
        keys = ("order_id", "date", "status", "total")
        found = [o for o in shop.orders.values() if o["customer"] == customer]
        return [{key: o[key] for key in keys} for o in found]

    @registry.tool
    def get_order(order_id: str) -> dict[str, Any]:
        """One order in full: items, shipping address, status, total."""
        return order(order_id)

    @registry.tool
    def update_order_status(order_id: str, status: str) -> dict[str, Any]:
        """Set an order's status (processing, shipped, delivered, delayed)."""
        if status not in ("processing", "shipped", "delivered", "delayed"):
            raise ToolFailure(f"unknown status {status!r}")
        previous, order(order_id)["status"] = order(order_id)["status"], status
        return {"order_id": order_id, "status": status, "previous": previous}

    @registry.tool
    def get_product(sku: str) -> dict[str, Any]:
        """One product: name, category, price, stock, warehouse, description."""
        return product(sku)

    @registry.tool
    def set_stock(sku: str, stock: int) -> dict[str, Any]:
        """Set a product's stock level."""
        product(sku)["stock"] = stock
        return {"sku": sku, "stock": stock}

    @registry.tool
    def set_price(sku: str, price: float) -> dict[str, Any]:
        """Set a product's price."""
        product(sku)["price"] = price
        return {"sku": sku, "price": price}

    @registry.tool
    def read_file(path: str) -> str:
        """The text of a document."""
        if path not in shop.files:
            raise ToolFailure(f"no file {path}")
        return shop.files[path]

    @registry.tool
    def write_file(path: str, content: str) -> str:
        """Write a document (replacing it)."""
        shop.files[path] = content
        return f"wrote {len(content)} characters to {path}"

    @registry.tool
    def get_exchange_rate(base: str, quote: str) -> dict[str, Any]:
        """The exchange rate from one currency to another."""
        rates = {("EUR", "USD"): 1.0842, ("GBP", "USD"): 1.2675, ("EUR", "GBP"): 0.8554}
        if (base, quote) not in rates:
            raise ToolFailure(f"no rate for {base}/{quote}")
        return {"base": base, "quote": quote, "rate": rates[base, quote], "date": "2026-12-01"}

    return registry


Check = Callable[[Any, str], bool]


@dataclass(frozen=True)
class BenchTask:
    """One task: the goal, the tools it may use, the code-mode script, and its check.

    Each flow gets ``new_state()`` and ``tools_for(state)``; ``check(state, answer)`` judges it.
    ``expect`` (execloop's own tasks) is the same verdict as an expression over the script's
    ``result.json``, for a broker that checks in the sandbox (``execloop demo``).
    """

    name: str
    goal: str
    tools: tuple[str, ...]
    script: str
    check: Check
    expect: str = ""
    new_state: Callable[[], Any] = Shop
    tools_for: Callable[[Any], ToolRegistry] = shop_registry
    source: str = "execloop"


def _fresh() -> Shop:
    return Shop()


def _acme_stale(shop: Shop) -> list[str]:
    fresh = _fresh()
    return [
        o["order_id"]
        for o in fresh.orders.values()
        if o["customer"] == "acme" and o["status"] == "processing" and o["date"] < "2026-11-10"
    ]


def _latest_globex() -> dict[str, Any]:
    orders = (o for o in _fresh().orders.values() if o["customer"] == "globex")
    latest = max(orders, key=lambda o: o["date"])
    return {key: latest[key] for key in ("order_id", "status", "total")}


def _stock(skus: tuple[str, ...], *, add: int) -> dict[str, int]:
    products = _fresh().products
    return {sku: products[sku]["stock"] + add for sku in skus}


def _low_stock() -> list[str]:
    products = _fresh().products
    return [f"SKU-{n:03d}" for n in range(1, 9) if products[f"SKU-{n:03d}"]["stock"] < 10]


def _raised_prices() -> dict[str, float]:
    products = _fresh().products
    return {
        f"SKU-{n:03d}": round(products[f"SKU-{n:03d}"]["price"] * 1.1, 2) for n in range(11, 21)
    }


SUITE: tuple[BenchTask, ...] = (
    BenchTask(
        name="fx_rate",
        goal="What is today's EUR to USD exchange rate?",
        tools=("get_exchange_rate",),
        script=(
            "import json\n"
            "from execloop_tools import get_exchange_rate\n"
            "rate = get_exchange_rate(base='EUR', quote='USD')\n"
            "json.dump({'eur_usd': rate['rate']}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: "1.0842" in answer,
        expect='result["eur_usd"] == 1.0842',
    ),
    BenchTask(
        name="latest_order",
        goal="What is the status and total of globex's most recent order?",
        tools=("list_orders", "get_order"),
        script=(
            "import json\n"
            "from execloop_tools import get_order, list_orders\n"
            "latest = max(list_orders(customer='globex'), key=lambda o: o['date'])\n"
            "order = get_order(order_id=latest['order_id'])\n"
            "keys = ('order_id', 'status', 'total')\n"
            "json.dump({k: order[k] for k in keys}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: (
            (
                o := max(
                    (o for o in shop.orders.values() if o["customer"] == "globex"),
                    key=lambda o: o["date"],
                )
            )["order_id"]
            in answer
            and o["status"] in answer
        ),
        expect=f"result == {_latest_globex()!r}",
    ),
    BenchTask(
        name="restock_two",
        goal="Add 25 units to the stock of SKU-003 and of SKU-007.",
        tools=("get_product", "set_stock"),
        script=(
            "import json\n"
            "from execloop_tools import get_product, set_stock\n"
            "stock = {}\n"
            "for sku in ('SKU-003', 'SKU-007'):\n"
            "    product = get_product(sku=sku)\n"
            "    stock[sku] = set_stock(sku=sku, stock=product['stock'] + 25)['stock']\n"
            "json.dump({'stock': stock}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: all(
            shop.products[s]["stock"] == _fresh().products[s]["stock"] + 25
            for s in ("SKU-003", "SKU-007")
        ),
        expect=f'result["stock"] == {_stock(("SKU-003", "SKU-007"), add=25)!r}',
    ),
    BenchTask(
        name="notes_fix",
        goal=(
            "In docs/install.md, docs/returns.md and docs/warranty.md, mark every TODO as DONE "
            "(replace the word), keeping the rest of each file as it is."
        ),
        tools=("read_file", "write_file"),
        script=(
            "import json\n"
            "from execloop_tools import read_file, write_file\n"
            "paths = [f'docs/{name}.md' for name in ('install', 'returns', 'warranty')]\n"
            "for path in paths:\n"
            "    write_file(path=path, content=read_file(path=path).replace('TODO', 'DONE'))\n"
            "json.dump({'updated': paths}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: all(
            "TODO" not in shop.files[f"docs/{n}.md"] and "DONE" in shop.files[f"docs/{n}.md"]
            for n in ("install", "returns", "warranty")
        ),
        expect='result["updated"] == ["docs/install.md", "docs/returns.md", "docs/warranty.md"]',
    ),
    BenchTask(
        name="delayed_review",
        goal=(
            "Review acme's orders that are still processing: mark as delayed every one placed "
            "before 2026-11-10, and say which ones you marked."
        ),
        tools=("list_orders", "get_order", "update_order_status"),
        script=(
            "import json\n"
            "from execloop_tools import get_order, list_orders, update_order_status\n"
            "pending = [o for o in list_orders(customer='acme') if o['status'] == 'processing']\n"
            "orders = [get_order(order_id=o['order_id']) for o in pending]\n"
            "late = [o['order_id'] for o in orders if o['date'] < '2026-11-10']\n"
            "for order_id in late:\n"
            "    update_order_status(order_id=order_id, status='delayed')\n"
            "json.dump({'delayed': late}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: all(
            shop.orders[i]["status"] == "delayed" and i in answer for i in _acme_stale(shop)
        ),
        expect=f'result["delayed"] == {_acme_stale(Shop())!r}',
    ),
    BenchTask(
        name="low_stock_audit",
        goal="Check SKU-001 to SKU-008 and raise the stock of every one below 10 units to 50.",
        tools=("get_product", "set_stock"),
        script=(
            "import json\n"
            "from execloop_tools import get_product, set_stock\n"
            "raised = []\n"
            "for n in range(1, 9):\n"
            "    product = get_product(sku=f'SKU-{n:03d}')\n"
            "    if product['stock'] < 10:\n"
            "        set_stock(sku=product['sku'], stock=50)\n"
            "        raised.append(product['sku'])\n"
            "json.dump({'raised_to_50': raised}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: all(
            shop.products[f"SKU-{n:03d}"]["stock"] >= 10 for n in range(1, 9)
        ),
        expect=f'result["raised_to_50"] == {_low_stock()!r}',
    ),
    BenchTask(
        name="customer_report",
        goal=(
            "Write reports/recent.md from templates/report.md: for acme, globex and initech, "
            "one line per each customer's 4 most recent orders with id, date, status, number "
            "of items and shipping city."
        ),
        tools=("list_orders", "get_order", "read_file", "write_file"),
        script=(
            "import json\n"
            "from execloop_tools import get_order, list_orders, read_file, write_file\n"
            "lines = [read_file(path='templates/report.md').rstrip(), '']\n"
            "for customer in ('acme', 'globex', 'initech'):\n"
            "    recent = sorted(list_orders(customer=customer), key=lambda o: o['date'])[-4:]\n"
            "    for summary in recent:\n"
            "        o = get_order(order_id=summary['order_id'])\n"
            "        lines.append(f\"- {customer} {o['order_id']} {o['date']} {o['status']} \"\n"
            "                     f\"{len(o['items'])} items, {o['shipping']['city']}\")\n"
            "write_file(path='reports/recent.md', content='\\n'.join(lines) + '\\n')\n"
            "json.dump({'wrote': 'reports/recent.md', 'orders': len(lines) - 2}, "
            "open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: shop.files.get("reports/recent.md", "").count("\n- ") == 12,
        expect='result == {"wrote": "reports/recent.md", "orders": 12}',
    ),
    BenchTask(
        name="price_update",
        goal="Raise the price of SKU-011 to SKU-020 by 10%, rounded to cents.",
        tools=("get_product", "set_price"),
        script=(
            "import json\n"
            "from execloop_tools import get_product, set_price\n"
            "prices = {}\n"
            "for n in range(11, 21):\n"
            "    product = get_product(sku=f'SKU-{n:03d}')\n"
            "    price = round(product['price'] * 1.1, 2)\n"
            "    prices[product['sku']] = set_price(sku=product['sku'], price=price)['price']\n"
            "json.dump({'prices': prices}, open('result.json', 'w'))\n"
        ),
        check=lambda shop, answer: all(
            shop.products[s]["price"] == round(_fresh().products[s]["price"] * 1.1, 2)
            for s in (f"SKU-{n:03d}" for n in range(11, 21))
        ),
        expect=f'result["prices"] == {_raised_prices()!r}',
    ),
)
