"""A broker in its own process, for the crash test: ``python -m tests.contract.broker_child DB``.

Runs 20 tasks with fixed ids (so a restart re-submits the same ones) through a scripted model
that takes 0.5 s per reply, 4 at a time.
"""

from __future__ import annotations

import sys

import anyio

from execloop.runtime.broker import Broker
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.models import ScriptedModel, ScriptedReply
from execloop.runtime.task import Task

SCRIPT = "import json\njson.dump({'ok': True}, open('result.json', 'w'))\n"
TASKS = [
    Task(
        id=f"task-{n:02d}",
        goal="Write result.json with ok true.",
        checks=(ExpressionCheck(expr='result["ok"] == True'),),
    )
    for n in range(20)
]


async def main(db: str) -> None:
    model = ScriptedModel(
        [ScriptedReply(script=SCRIPT, delay_s=0.5)], when_exhausted="repeat_last", name="crash"
    )
    async with Broker(db=db, model=model, max_concurrency=4) as broker:
        await broker.map(TASKS)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
