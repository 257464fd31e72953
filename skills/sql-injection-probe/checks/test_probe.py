"""sql-injection-probe check: findings are replayed, and a missed classic injection is caught.

Runs in the sandbox with the workspace as the working directory (task.json, the target module,
the setup script and result.json are read from there). Standard library only.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

WORK = Path.cwd()
NO_MATCH = "execloop-no-match-7f3a"
CLASSIC = ["' OR '1'='1", "' OR 1=1 --", '" OR "1"="1', "0 OR 1=1"]


def _load(name: str) -> Any:
    return json.loads((WORK / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return dict(_load("task.json"))


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return dict(_load("result.json"))


def _rows(value: Any) -> list[tuple[Any, ...]]:
    """Whatever the function returns, as rows: cursor, list of rows, one row, a scalar."""
    if hasattr(value, "fetchall"):
        value = value.fetchall()
    if value is None:
        return []
    row_types = (tuple, list, dict, sqlite3.Row)
    if isinstance(value, list | tuple) and all(isinstance(r, row_types) for r in value):
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in value]
    if isinstance(value, dict):
        return [tuple(value.values())]
    return [value if isinstance(value, tuple) else (value,)]


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]


def _snapshot(conn: sqlite3.Connection, passed: str) -> dict[str, list[str]]:
    """Every table's rows, sorted, leaving out rows that store the value passed."""
    return {
        t: sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{t}"') if passed not in r)
        for t in _tables(conn)
    }


# rows returned (None: the call raised), data afterwards, whether the value is in the seed data
Observation = tuple[list[str] | None, dict[str, list[str]], bool]


@pytest.fixture(scope="module")
def observe(task: dict[str, Any]) -> Callable[[str], Observation]:
    spec = importlib.util.spec_from_file_location("probe_target", WORK / task["target"])
    assert spec and spec.loader, f"cannot load {task['target']}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, task["function"])
    setup = (WORK / task["setup"]).read_text(encoding="utf-8")

    def call(value: str) -> Observation:
        conn = sqlite3.connect(":memory:")
        conn.executescript(setup)
        stored = any(
            value in row for t in _tables(conn) for row in conn.execute(f'SELECT * FROM "{t}"')
        )
        rows: list[str] | None
        try:
            kwargs = {task["parameter"]: value} if task.get("parameter") else {}
            out = function(conn, **kwargs) if kwargs else function(conn, value)
            rows = [repr(tuple("<v>" if c == value else c for c in r)) for r in _rows(out)]
        except Exception:  # a failing call returned nothing; only its data changes count
            rows = None
        return rows, _snapshot(conn, value), stored

    return call


def _effective(observe: Callable[[str], Observation], payload: str) -> bool:
    """Different rows than for a value matching nothing, or different data afterwards; a value
    stored in the seed data (say, a real user name) legitimately finds rows: no injection."""
    reference_rows, reference_data, _ = observe(NO_MATCH)
    rows, data, stored = observe(payload)
    return not stored and ((rows is not None and rows != reference_rows) or data != reference_data)


def test_every_reported_success_replays(result: dict[str, Any], observe: Any) -> None:
    fake = [s["payload"] for s in result["successful"] if not _effective(observe, s["payload"])]
    assert not fake, f"{len(fake)} reported successes have no effect when replayed: {fake[:3]}"


def test_a_working_classic_injection_is_reported(result: dict[str, Any], observe: Any) -> None:
    working = [payload for payload in CLASSIC if _effective(observe, payload)]
    if working:
        assert result["vulnerable"], f"reported not vulnerable, but {working[0]!r} works"


def test_successes_are_distinct_and_counted(result: dict[str, Any]) -> None:
    payloads = [s["payload"] for s in result["successful"]]
    assert len(set(payloads)) == len(payloads), "a payload is reported twice"
    assert result["payloads_tried"] >= len(payloads)
