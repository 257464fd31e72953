"""Measure the label distribution of the task's dataset and write a seeded, rebalanced copy."""

import csv
import json
import math
import random
import sys
from collections import defaultdict
from pathlib import Path

task = {"label_column": "label", "strategy": "oversample", "seed": 0, "max_imbalance": 1.5}
task.update(json.loads(Path("task.json").read_text(encoding="utf-8")))
label = task["label_column"]


def read_rows(path):
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def measures(by_class):
    counts = {c: len(rows) for c, rows in sorted(by_class.items())}
    n, k = sum(counts.values()), len(counts)
    entropy = -sum(v / n * math.log2(v / n) for v in counts.values())
    return {
        "rows": n,
        "counts": counts,
        "imbalance_ratio": max(counts.values()) / min(counts.values()),
        "entropy": entropy,
        "normalized_entropy": entropy / math.log2(k),
    }


rows = read_rows(Path(task["data"]))
by_class = defaultdict(list)
unlabeled = 0
for row in rows:
    value = row.get(label)
    if value is None or value == "":
        unlabeled += 1
    else:
        by_class[str(value)].append(row)
if len(by_class) < 2:
    sys.exit(f"only {len(by_class)} class(es) in column {label!r}: nothing to balance")

rng = random.Random(task["seed"])
sizes = [len(members) for members in by_class.values()]
balanced = defaultdict(list)
for cls in sorted(by_class):
    members = by_class[cls]
    if task["strategy"] == "oversample":
        balanced[cls] = members + rng.choices(members, k=max(sizes) - len(members))
    else:
        balanced[cls] = rng.sample(members, min(sizes))
out_rows = [row for cls in sorted(balanced) for row in balanced[cls]]
rng.shuffle(out_rows)

with open("balanced.jsonl", "w", encoding="utf-8") as handle:
    for row in out_rows:
        handle.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

result = {
    "label_column": label,
    "strategy": task["strategy"],
    "seed": task["seed"],
    "max_imbalance": task["max_imbalance"],
    "dropped_unlabeled": unlabeled,
    "output": "balanced.jsonl",
    "before": measures(by_class),
    "after": measures(balanced),
}
Path("result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
before, after = result["before"], result["after"]
print(
    f"{before['rows']} -> {after['rows']} rows; imbalance {before['imbalance_ratio']:.2f} -> "
    f"{after['imbalance_ratio']:.2f}; normalized entropy {before['normalized_entropy']:.3f} -> "
    f"{after['normalized_entropy']:.3f}"
)
