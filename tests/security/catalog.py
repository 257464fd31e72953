"""The whole suite's case table and the README table rendered from outcomes.

``render_table(outcomes)`` is what ``python -m tests.security.table`` writes into the README
between the two markers; ``claimed_outcomes()`` is the table a green suite produces (every
claimed case stopped), which the README must match.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .attacks import ALL_BACKENDS, Attack, Category, HostAttack
from .cases_bridge import BRIDGE_ATTACKS, BRIDGE_HOST_ATTACKS
from .cases_files import FILE_ATTACKS
from .cases_lifecycle import LIFECYCLE_ATTACKS
from .cases_network import NETWORK_ATTACKS
from .cases_privilege import PRIVILEGE_ATTACKS
from .cases_python import PYTHON_ATTACKS
from .cases_resources import RESOURCE_ATTACKS
from .cases_transfers import TRANSFER_ATTACKS
from .runner import Outcome

__all__ = [
    "ATTACKS",
    "BEGIN",
    "END",
    "HOST_ATTACKS",
    "RESULTS",
    "all_cases",
    "claimed_outcomes",
    "render_table",
]

ATTACKS: list[Attack] = [
    *RESOURCE_ATTACKS,
    *FILE_ATTACKS,
    *NETWORK_ATTACKS,
    *PRIVILEGE_ATTACKS,
    *LIFECYCLE_ATTACKS,
    *PYTHON_ATTACKS,
    *BRIDGE_ATTACKS,
]
HOST_ATTACKS: list[HostAttack] = [*TRANSFER_ATTACKS, *BRIDGE_HOST_ATTACKS]

RESULTS = Path(__file__).resolve().parents[2] / "build" / "security" / "results.json"
BEGIN = "<!-- security-table:begin (python -m tests.security.table --write) -->"
END = "<!-- security-table:end -->"


def all_cases() -> list[Attack | HostAttack]:
    """Every case in table order: by category, then as listed."""
    cases: list[Attack | HostAttack] = [*ATTACKS, *HOST_ATTACKS]
    order = list(Category)
    return sorted(cases, key=lambda case: order.index(case.category))


def claimed_outcomes() -> list[Outcome]:
    return [
        Outcome(case.name, case.category, backend, True, "stopped")
        for case in all_cases()
        for backend in case.claimed
    ]


def render_table(outcomes: Iterable[Outcome]) -> str:
    """Markdown: one row per case, one column per backend; ✅ stopped, ❌ got through,
    blank where the backend does not claim it, ? where a claimed case has no outcome."""
    seen = {(o.attack, o.backend): o.stopped for o in outcomes}
    lines = [
        f"| category | attack ({len(all_cases())} cases) | " + " | ".join(ALL_BACKENDS) + " |",
        "|---|---|" + "---|" * len(ALL_BACKENDS),
    ]
    for case in all_cases():
        cells = []
        for backend in ALL_BACKENDS:
            if backend not in case.claimed:
                cells.append(" ")
            else:
                stopped = seen.get((case.name, backend))
                cells.append("?" if stopped is None else "✅" if stopped else "❌")
        lines.append(f"| {case.category} | {case.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
