"""A script as a sub-agent would write it: clean a CSV, summarise it, write result.json.

Run it in a sandbox with:
    execloop run examples/agent_script.py --input examples/data/orders.csv
"""

import csv
import json
from collections import defaultdict

rows, seen, dropped = [], set(), {"duplicate_id": 0, "missing_amount": 0}
with open("orders.csv", newline="") as handle:
    for row in csv.DictReader(handle):
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
