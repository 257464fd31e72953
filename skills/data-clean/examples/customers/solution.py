"""Clean the task's dataset against its target schema: write clean.jsonl and result.json."""

import csv
import json
import math
import re
from pathlib import Path

import jsonschema

MISSING = object()
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

task = json.loads(Path("task.json").read_text(encoding="utf-8"))
schema = json.loads(Path(task["schema"]).read_text(encoding="utf-8"))
key = task.get("key") or []
properties = schema.get("properties", {})
project = schema.get("additionalProperties") is False
validator_class = jsonschema.validators.validator_for(schema)
validator = validator_class(schema, format_checker=jsonschema.FormatChecker())


def read_rows(path):
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    if path.suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise SystemExit(f"unsupported data file {path.name}: expected .csv, .jsonl or .parquet")


def coerce(value, spec):
    types = spec.get("type", [])
    types = [types] if isinstance(types, str) else types
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None if "null" in types else MISSING
    if not isinstance(value, str):
        return value
    value = value.strip()
    if value == "":
        return MISSING
    if "string" in types or not types:
        return value
    if "integer" in types and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if "number" in types:
        try:
            return float(value)
        except ValueError:
            pass
    if "boolean" in types and value.lower() in BOOLEANS:
        return BOOLEANS[value.lower()]
    return value  # not convertible: validation reports it


def normalise(row):
    out = {}
    names = list(properties) + [k for k in row if k not in properties and not project]
    for name in names:
        if name in row:
            value = coerce(row[name], properties.get(name, {}))
            if value is not MISSING:
                out[name] = value
    return out


rows = read_rows(Path(task["data"]))
clean, invalid, seen, duplicates = [], [], set(), 0
for number, raw in enumerate(rows, start=1):
    row = normalise(raw)
    errors = sorted(validator.iter_errors(row), key=lambda e: list(e.path))
    if errors:
        reasons = [f"{'.'.join(map(str, e.path)) or 'row'}: {e.message}" for e in errors]
        invalid.append({"row": number, "reasons": reasons})
        continue
    identity = json.dumps([row.get(k) for k in key] if key else row, sort_keys=True)
    if identity in seen:
        duplicates += 1
        continue
    seen.add(identity)
    clean.append(row)

with open("clean.jsonl", "w", encoding="utf-8") as handle:
    for row in clean:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")

result = {
    "rows_in": len(rows),
    "rows_out": len(clean),
    "duplicates_removed": duplicates,
    "invalid_rows": invalid,
    "output": "clean.jsonl",
}
assert result["rows_in"] == len(clean) + duplicates + len(invalid)
Path("result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
print(f"{len(rows)} rows in, {len(clean)} out, {duplicates} duplicates, {len(invalid)} invalid")
