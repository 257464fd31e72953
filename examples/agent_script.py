"""A script as a sub-agent would write it: clean a CSV, summarise it, write result.json.

It reads the CSV named by its first argument, else orders.csv in the workspace, else a small
built-in sample, so each of these works:
    execloop run --backend local examples/agent_script.py
    execloop run examples/agent_script.py --input examples/data/orders.csv
    execloop run examples/agent_script.py --input examples/data -- data/orders.csv
"""

import csv
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

SAMPLE = """order_id,customer,region,amount
1,c1,north,120.50
2,c2,south,80.00
2,c2,south,80.00
3,c3,north,
4,c4,east,42.25
"""

source = Path(sys.argv[1] if len(sys.argv) > 1 else "orders.csv")
text = source.read_text(encoding="utf-8") if source.exists() else SAMPLE
print(f"reading {source if source.exists() else 'the built-in sample'}")

rows, seen, dropped = [], set(), {"duplicate_id": 0, "missing_amount": 0}
for row in csv.DictReader(io.StringIO(text)):
    if row["order_id"] in seen:
        dropped["duplicate_id"] += 1
        continue
    if not row["amount"]:
        dropped["missing_amount"] += 1
        continue
    seen.add(row["order_id"])
    rows.append(row)

revenue = defaultdict(float)
for row in rows:
    revenue[row["region"]] += float(row["amount"])

result = {
    "rows_in": len(rows) + sum(dropped.values()),
    "rows_out": len(rows),
    "dropped": dropped,
    "revenue_by_region": {region: round(total, 2) for region, total in sorted(revenue.items())},
}
with open("result.json", "w") as handle:
    json.dump(result, handle, indent=2)
print(json.dumps(result, indent=2))
assert result["rows_out"] > 0, "no rows survived cleaning"
