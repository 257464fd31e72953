"""Probe the task's SQL-building function with injection payloads in throw-away SQLite DBs."""

import importlib.util
import json
import sqlite3
from pathlib import Path

NO_MATCH = "execloop-no-match-7f3a"
QUOTES = ["'", '"', ""]  # string contexts, then a numeric one

task = {"extra_payloads": []}
task.update(json.loads(Path("task.json").read_text(encoding="utf-8")))
setup_sql = Path(task["setup"]).read_text(encoding="utf-8")
spec = importlib.util.spec_from_file_location("target", task["target"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
function = getattr(module, task["function"])
benign = task["benign"]


def fresh_db():
    conn = sqlite3.connect(":memory:")
    conn.executescript(setup_sql)
    return conn


def as_rows(value):
    if hasattr(value, "fetchall"):
        value = value.fetchall()
    if value is None:
        return []
    row_types = (tuple, list, dict, sqlite3.Row)
    if isinstance(value, (list, tuple)) and all(isinstance(r, row_types) for r in value):
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in value]
    if isinstance(value, dict):
        return [tuple(value.values())]
    return [value if isinstance(value, tuple) else (value,)]


def snapshot(conn, passed):
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {
        t: sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{t}"') if passed not in r)
        for t in tables
    }


def stored_in_seed_data(value):
    """Rows found for a value that is really stored are the function working, not injection."""
    conn = fresh_db()
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return any(value in row for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))


def call(value):
    """(rows or None if it raised, error text, data snapshot) for one call on a fresh DB."""
    conn = fresh_db()
    try:
        if task.get("parameter"):
            out = function(conn, **{task["parameter"]: value})
        else:
            out = function(conn, value)
        rows = [tuple("<v>" if c == value else c for c in r) for r in as_rows(out)]
        error = None
    except Exception as exc:
        rows, error = None, f"{type(exc).__name__}: {exc}"[:200]
    return rows, error, snapshot(conn, value)


def data_change(before, after):
    changes = []
    for table in sorted(set(before) | set(after)):
        if table not in after:
            changes.append(f"table {table} dropped")
        elif table not in before:
            changes.append(f"table {table} created")
        elif before[table] != after[table]:
            changes.append(f"table {table}: {len(before[table])} -> {len(after[table])} rows")
    return "; ".join(changes)


# Schema knowledge aims the UNION and stacked payloads at real tables and columns.
with fresh_db() as probe_conn:
    tables = {
        name: [c[1] for c in probe_conn.execute(f'PRAGMA table_info("{name}")')]
        for (name,) in probe_conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }

payloads = []
for q in QUOTES:
    prefix = f"x{q}" if q else "0"
    payloads += [
        ("tautology", f"{prefix} OR {q}1{q}={q}1" if q else "0 OR 1=1"),
        ("tautology", f"{prefix} OR 1=1 --"),
        ("tautology", f"{prefix} OR 1=1 /*"),
        ("comment", f"{benign}{q} --"),
        ("comment", f"{benign}{q} /*"),
        ("comment", f"{benign}{q};--"),
    ]
    payloads += [
        ("union", f"{prefix} UNION SELECT {', '.join(['NULL'] * n)} --") for n in range(1, 9)
    ]
    for table, columns in tables.items():
        payloads += [
            ("stacked", f"{prefix}; DELETE FROM {table}; --"),
            ("stacked", f"{prefix}; DROP TABLE {table}; --"),
            ("stacked", f"{prefix}; UPDATE {table} SET {columns[-1]} = NULL; --"),
        ]
payloads += [(p["category"], p["payload"]) for p in task["extra_payloads"]]

reference_rows, _, reference_data = call(NO_MATCH)
attempts, successful, seen = [], [], set()


def attack(category, payload):
    if payload in seen:
        return False
    seen.add(payload)
    rows, error, data = call(payload)
    effects = []
    if rows is not None and rows != reference_rows:
        effects.append(
            f"returned {len(rows)} row(s) where a value matching nothing returns "
            f"{len(reference_rows or [])}: {rows[:2]!r}"
        )
    if data != reference_data:
        effects.append("changed data: " + data_change(reference_data, data))
    if effects and stored_in_seed_data(payload):
        effects, error = [], "the payload is a value stored in the seed data"
    outcome = "succeeded" if effects else ("error" if error else "no_effect")
    attempts.append({"payload": payload, "category": category, "outcome": outcome, "error": error})
    if effects:
        effect = "; ".join(effects)[:300]
        successful.append({"payload": payload, "category": category, "effect": effect})
    return bool(effects)


for category, payload in payloads:
    worked = attack(category, payload)
    # A working NULL union reveals the column count: use it to pull real rows from each table.
    if worked and category == "union" and "NULL" in payload:
        width = payload.count("NULL")
        quote_prefix = payload.split(" UNION ")[0]
        for table, columns in tables.items():
            picked = (columns + ["NULL"] * width)[:width]
            attack("union", f"{quote_prefix} UNION SELECT {', '.join(picked)} FROM {table} --")

result = {
    "function": task["function"],
    "payloads_tried": len(attempts),
    "categories_tried": sorted({a["category"] for a in attempts}),
    "successful": successful,
    "vulnerable": bool(successful),
    "attempts": attempts,
}
Path("result.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
verdict = "VULNERABLE" if successful else "no injection found"
print(f"{task['function']}: {verdict} ({len(successful)}/{len(attempts)} payloads succeeded)")
