"""A stand-in for a training loop that reports its progress to execloop (no dependencies).

    execloop run --backend local examples/progress_script.py

``execloop_progress`` is shipped into every sandbox; each report becomes a progress event: a
live bar in ``execloop run``/``task``, rows in the broker's store, MCP progress notifications.
"""

import json
import math
import time

import execloop_progress

STEPS = 40
loss = 4.0
for step in range(1, STEPS + 1):
    time.sleep(0.05)  # one optimiser step
    loss = 4.0 * math.exp(-step / 20)
    execloop_progress.report(step, STEPS, loss=loss, lr=1e-3)
print(f"trained {STEPS} steps, final loss {loss:.3f}")
with open("result.json", "w") as handle:
    json.dump({"steps": STEPS, "loss_final": loss}, handle)
