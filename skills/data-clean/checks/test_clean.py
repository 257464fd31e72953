"""data-clean check: clean.jsonl re-validated against the task's own target schema.

Runs in the sandbox with the workspace as the working directory (task.json, the input data,
the schema, clean.jsonl and result.json are read from there). Uses only the standard library,
jsonschema, and pyarrow for Parquet inputs.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

WORK = Path.cwd()


def _load(name: str) -> Any:
    return json.loads((WORK / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def task() -> dict[str, Any]:
    return dict(_load("task.json"))


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    lines = (WORK / "clean.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _input_rows(path: Path) -> int:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return sum(1 for _ in csv.DictReader(handle))
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def test_every_row_matches_the_target_schema(
    task: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    schema = _load(task["schema"])
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=jsonschema.FormatChecker())
    bad = [(n, e.message) for n, row in enumerate(rows, 1) for e in validator.iter_errors(row)]
    assert not bad, f"{len(bad)} schema violations; first: line {bad[0][0]}: {bad[0][1]}"


def test_no_duplicate_keys(task: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    key = task.get("key") or []
    ids = [json.dumps([row.get(k) for k in key] if key else row, sort_keys=True) for row in rows]
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not dupes, f"{len(dupes)} duplicated keys in clean.jsonl, e.g. {dupes[0]}"


def test_report_matches_the_files(task: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    result = _load("result.json")
    assert result["rows_out"] == len(rows), "rows_out differs from the lines in clean.jsonl"
    assert result["rows_in"] == _input_rows(WORK / task["data"]), "rows_in differs from input"
