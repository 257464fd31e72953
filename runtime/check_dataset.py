"""Dataset checks: facts gathered inside the sandbox, the verdict decided on the host.

The dataset is read where it lives (pandas is in the sandbox image; the host may not have it)
by ``dataset_in_sandbox``, which only reports facts (rows, columns, duplicates, label counts).
``dataset_verdict`` is a pure function of the spec and those facts, so the rules are testable
without Docker.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from execloop.runtime.check_sandbox import run_in_sandbox
from execloop.runtime.checks import DatasetCheck
from execloop.sandboxes.base import Sandbox

__all__ = [
    "DatasetSummary",
    "dataset_in_sandbox",
    "dataset_verdict",
    "infer_format",
    "run_dataset",
]

Format = Literal["jsonl", "csv", "parquet"]
_EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}


class DatasetSummary(BaseModel):
    """Facts about a dataset, as ``dataset_in_sandbox`` reports them (validated: untrusted)."""

    rows: int
    columns: list[str]  # the first 50, for reasons
    n_columns: int
    present: list[str]  # which of the columns the check names exist
    duplicates: int | None = None  # by unique_by (or whole rows); None when not asked
    labels: list[tuple[str, int]] = []  # (label, count), most frequent first; ends kept
    n_classes: int = 0


def infer_format(path: str, declared: Format | None = None) -> Format | None:
    """``declared``, else from the extension (``data.csv.gz`` is csv); None if unknown."""
    if declared is not None:
        return declared
    suffixes = [s.lower() for s in PurePosixPath(path).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


def dataset_in_sandbox(params: dict[str, Any], here: str) -> dict[str, Any]:
    """Runs INSIDE the sandbox: read the dataset with pandas and report facts about it."""
    import importlib
    import os

    pandas = importlib.import_module("pandas")
    workspace = os.path.realpath(os.path.dirname(here))
    path = os.path.realpath(os.path.join(workspace, params["path"]))
    if not path.startswith(workspace + os.sep):
        return {"error": f"{params['path']} is outside the workspace"}
    if not os.path.isfile(path):
        return {"error": f"{params['path']} does not exist"}
    if params["format"] == "jsonl":  # no dtype or date guessing: check what was written
        frame = pandas.read_json(path, lines=True, dtype=False, convert_dates=False)
    elif params["format"] == "csv":
        frame = pandas.read_csv(path)
    else:
        frame = pandas.read_parquet(path)
    columns = [str(column) for column in frame.columns]
    frame.columns = columns
    summary: dict[str, Any] = {
        "rows": len(frame),
        "columns": columns[:50],
        "n_columns": len(columns),
        "present": [name for name in params["names"] if name in columns],
    }
    unique_by = params["unique_by"]
    if unique_by is not None and all(name in columns for name in unique_by):
        subset = frame[list(unique_by) or columns]
        try:
            summary["duplicates"] = int(subset.duplicated().sum())
        except TypeError:  # unhashable cells (lists, dicts from jsonl): compare their text
            summary["duplicates"] = int(subset.astype(str).duplicated().sum())
    label = params["label_column"]
    if label is not None and label in columns:
        counts = frame[label].astype(str).value_counts()
        pairs = [(str(name), int(count)) for name, count in counts.items()]
        summary["labels"] = pairs if len(pairs) <= 40 else pairs[:20] + pairs[-20:]
        summary["n_classes"] = len(pairs)
    return summary


def dataset_verdict(spec: DatasetCheck, summary: DatasetSummary) -> tuple[bool, str]:
    """``(passed, reason)`` from the facts; the reason lists every problem, or the facts."""
    problems: list[str] = []
    facts = [f"{summary.rows} rows, {summary.n_columns} columns"]
    missing = [name for name in spec.required_columns if name not in summary.present]
    if missing:
        shown = ", ".join(summary.columns) + (", …" if summary.n_columns > 50 else "")
        problems.append(f"missing columns: {', '.join(missing)} (has: {shown})")
    if summary.rows < spec.min_rows:
        problems.append(f"only {summary.rows} rows (min_rows {spec.min_rows})")
    if spec.unique_by is not None:
        by = f" by ({', '.join(spec.unique_by)})" if spec.unique_by else ""
        absent = [name for name in spec.unique_by if name not in summary.present]
        if absent:
            problems.append(f"unique_by columns missing: {', '.join(absent)}")
        elif summary.duplicates:
            problems.append(f"{summary.duplicates} duplicate rows{by}")
        else:
            facts.append(f"no duplicate rows{by}")
    if spec.label_column is not None:
        problems += _balance(spec, summary, facts)
    return (False, "; ".join(problems)) if problems else (True, "; ".join(facts))


def _balance(spec: DatasetCheck, summary: DatasetSummary, facts: list[str]) -> list[str]:
    label = spec.label_column
    if label not in summary.present:
        return [f"label column {label!r} missing"]
    if not summary.labels:
        return [f"label column {label!r} has no values"]
    (top, most), (bottom, least) = summary.labels[0], summary.labels[-1]
    counts = f"{top}: {most}, {bottom}: {least}"
    if spec.max_imbalance is None:
        facts.append(f"{summary.n_classes} classes in {label} ({counts})")
        return []
    if summary.n_classes < 2:
        return [f"only one class in {label} ({top}: {most})"]
    ratio = most / least
    limit = float(spec.max_imbalance)  # shown as 3.0, like the ratio
    if ratio > limit:
        return [f"imbalance {ratio:.1f} > {limit} ({counts})"]
    facts.append(f"imbalance {ratio:.1f} ≤ {limit} ({counts})")
    return []


async def run_dataset(spec: DatasetCheck, *, sandbox: Sandbox) -> tuple[bool, str]:
    """Gather the facts in the sandbox and judge them."""
    fmt = infer_format(spec.path, spec.format)
    if fmt is None:
        return False, f"cannot tell the format of {spec.path}: set format (jsonl, csv, parquet)"
    names = [*spec.required_columns, *(spec.unique_by or ()), spec.label_column or ""]
    params = {
        "path": spec.path,
        "format": fmt,
        "names": sorted({name for name in names if name}),
        "unique_by": spec.unique_by,
        "label_column": spec.label_column,
    }
    raw = await run_in_sandbox(sandbox, dataset_in_sandbox, params, timeout=sandbox.spec.timeout_s)
    if "error" in raw:
        return False, f"cannot read {spec.path} as {fmt}: {raw['error']}"
    try:
        summary = DatasetSummary.model_validate(raw)
    except ValidationError as exc:
        return False, f"malformed dataset summary from the sandbox: {exc.error_count()} errors"
    return dataset_verdict(spec, summary)
