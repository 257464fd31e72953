"""A broker in its own process, for the crash and two-broker tests:
``python -m tests.contract.broker_child DB [--calls-log FILE] [--reverse] [--barrier FILE]``.

Runs 20 tasks with fixed ids (so a restart, or a second broker, submits the same ones) through
a scripted model that takes 0.5 s per reply, 4 at a time, and prints ``<id>=<status>`` for
each. With a calls log, every model call appends ``<pid> <task id>`` to that file, so a test
can count who ran which task; ``--reverse`` submits the tasks last to first; with a barrier,
the running broker creates ``FILE.<pid>`` and waits for FILE before it submits anything.
"""

from __future__ import annotations

import argparse
import os
import time

import anyio

from execloop.runtime.broker import Broker
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.models import ScriptedModel, ScriptedReply
from execloop.runtime.models.base import Model, ModelReply, ModelRequest
from execloop.runtime.task import Result, Task

SCRIPT = "import json\njson.dump({'ok': True}, open('result.json', 'w'))\n"
TASKS = [
    Task(
        id=f"task-{n:02d}",
        goal="Write result.json with ok true.",
        checks=(ExpressionCheck(expr='result["ok"] == True'),),
    )
    for n in range(20)
]


class _Logged:
    """The shared scripted model, noting each call for one task in the calls log."""

    def __init__(self, model: ScriptedModel, task_id: str, log_fd: int) -> None:
        self._model, self._task_id, self._log_fd = model, task_id, log_fd

    @property
    def name(self) -> str:
        return self._model.name

    @property
    def scripted(self) -> bool:
        return True

    async def complete(self, request: ModelRequest) -> ModelReply:
        os.write(self._log_fd, f"{os.getpid()} {self._task_id}\n".encode())  # O_APPEND: whole
        return await self._model.complete(request)


async def main(db: str, calls_log: str | None, reverse: bool, barrier: str | None) -> None:
    shared = ScriptedModel(
        [ScriptedReply(script=SCRIPT, delay_s=0.5)], when_exhausted="repeat_last", name="crash"
    )
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    log_fd = None if calls_log is None else os.open(calls_log, flags, 0o600)

    def model_for(task: Task) -> Model:
        return shared if log_fd is None else _Logged(shared, task.id, log_fd)

    async with Broker(db=db, model=model_for, max_concurrency=4) as broker:
        if barrier is not None:
            await anyio.Path(f"{barrier}.{os.getpid()}").touch()
            await anyio.to_thread.run_sync(_wait_for, barrier)
        results = await broker.map(TASKS[::-1] if reverse else TASKS)
    print(" ".join(f"{r.task_id}={r.status.value}" for r in sorted(results, key=_by_id)))


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.001)


def _by_id(result: Result) -> str:
    return result.task_id


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--calls-log")
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--barrier")
    args = parser.parse_args()
    anyio.run(main, args.db, args.calls_log, args.reverse, args.barrier)
