"""data-balance check: the reported measures are recomputed from the files themselves.

Runs in the sandbox with the workspace as the working directory (task.json, the input data,
balanced.jsonl and result.json are read from there). Standard library; pyarrow for Parquet.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

WORK = Path.cwd()


def _load(name: str) -> Any:
    return json.loads((WORK / name).read_text(encoding="utf-8"))


def _read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    import pyarrow.parquet as pq

    return list(pq.read_table(path).to_pylist())


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def _measures(rows: list[dict[str, Any]], label: str) -> dict[str, Any]:
    counts = Counter(str(row[label]) for row in rows)
    n, k = sum(counts.values()), len(counts)
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values())
    return {
        "rows": n,
        "counts": dict(counts),
        "imbalance_ratio": max(counts.values()) / min(counts.values()),
        "entropy": entropy,
        "normalized_entropy": entropy / math.log2(k) if k > 1 else 0.0,
    }


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return dict(_load("result.json"))


@pytest.fixture(scope="module")
def label(result: dict[str, Any]) -> str:
    return str(result["label_column"])


@pytest.fixture(scope="module")
def inputs(label: str) -> list[dict[str, Any]]:
    rows = _read(WORK / _load("task.json")["data"])
    return [row for row in rows if row.get(label) not in (None, "")]


@pytest.fixture(scope="module")
def outputs() -> list[dict[str, Any]]:
    return _read(WORK / "balanced.jsonl")


def test_parameters_echo_the_task(result: dict[str, Any]) -> None:
    task = _load("task.json")
    wrong = {k: (v, result.get(k)) for k, v in task.items() if k != "data" and result.get(k) != v}
    assert not wrong, f"result.json does not echo task.json: {wrong} (task, result)"


@pytest.mark.parametrize("when", ["before", "after"])
def test_measures_are_recomputed_exactly(
    when: str,
    result: dict[str, Any],
    label: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> None:
    actual = _measures(inputs if when == "before" else outputs, label)
    reported = result[when]
    assert reported["counts"] == actual["counts"], f"{when}.counts: actual {actual['counts']}"
    assert reported["rows"] == actual["rows"], f"{when}.rows: actual {actual['rows']}"
    for name in ("imbalance_ratio", "entropy", "normalized_entropy"):
        assert math.isclose(reported[name], actual[name], abs_tol=1e-6), (
            f"{when}.{name}: reported {reported[name]}, actual {actual[name]}"
        )


def test_output_rows_come_from_the_input(
    result: dict[str, Any], inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> None:
    have, made = Counter(map(_canonical, inputs)), Counter(map(_canonical, outputs))
    invented = [row for row in made if row not in have]
    assert not invented, f"{len(invented)} output rows are not input rows, e.g. {invented[0]}"
    if result["strategy"] == "undersample":
        extra = [row for row, n in made.items() if n > have[row]]
        assert not extra, f"undersampling repeated {len(extra)} rows, e.g. {extra[0]}"
    else:
        lost = [row for row in have if row not in made]
        assert not lost, f"oversampling dropped {len(lost)} input rows, e.g. {lost[0]}"
