"""A broker in its own process running one checkpointing task, for the resume-after-crash test:
``python -m tests.contract.checkpoint_child DB``. It prints the task's answer (where the last
attempt resumed from) once the task passes."""

from __future__ import annotations

import sys

import anyio

from execloop.runtime.broker import Broker
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.task import Budget, Task
from execloop.sandboxes import SandboxSpec
from execloop.testing import ScriptedModel

STEPS = 40


def trains(steps: int) -> str:
    """A script that saves its step after each one (write + rename: a kill never leaves half a
    file), resumes from the saved one, and says where it started in result.json."""
    return f"""
import json, os, pathlib, time
ckpt = pathlib.Path(os.environ["EXECLOOP_CHECKPOINT_DIR"]) / "state.json"
start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
print("resuming from step", start, flush=True)
for step in range(start, {steps}):
    time.sleep(0.1)  # one training step
    ckpt.with_suffix(".tmp").write_text(json.dumps({{"step": step + 1}}))
    ckpt.with_suffix(".tmp").replace(ckpt)
json.dump({{"resumed_from": start, "step": {steps}}}, open("result.json", "w"))
"""


TASK = Task(
    id="trains-through-a-crash",
    goal=f"Train for {STEPS} steps, checkpointing each one.",
    sandbox=SandboxSpec(timeout_s=60, checkpoint_size="1m"),
    checks=(ExpressionCheck(expr=f'result["step"] == {STEPS}'),),
    budget=Budget(max_attempts=2),
)


async def main(db: str) -> None:
    model = ScriptedModel([trains(STEPS)], when_exhausted="repeat_last", name="checkpoints")
    async with Broker(db=db, model=model) as broker:
        (result,) = await broker.map([TASK])
    print(result.status.value, result.answer.replace("\n", ""))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
