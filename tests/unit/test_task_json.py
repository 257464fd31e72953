"""A skill's ``defaults`` reach the sandbox's task.json the same way whichever path runs the
task: ``SubAgent(Task(skill=...))`` directly, or a broker resolving the skill."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from execloop.runtime.broker import Broker
from execloop.runtime.loop import SubAgent
from execloop.runtime.skills import find_skill
from execloop.runtime.task import Budget, Task
from execloop.runtime.task_json import with_skill_defaults
from execloop.testing import FakeBackend, FakeRun, ScriptedModel

pytestmark = pytest.mark.anyio

GIVEN = {"data": "a.csv", "schema": "s.json"}


def _task(tmp_path: Path, values: dict[str, Any]) -> Task:
    folder = tmp_path / "given"
    folder.mkdir(exist_ok=True)
    (folder / "task.json").write_text(json.dumps(values))
    return Task(
        id="clean",
        goal="clean it",
        skill="data-clean",
        inputs=(folder / "task.json",),
        budget=Budget(max_attempts=1),
    )


def _recorder(seen: list[dict[str, Any]]) -> FakeBackend:
    def handler(run: FakeRun) -> None:
        seen.append(json.loads(run.files["task.json"]))

    return FakeBackend(handler)


def _model() -> ScriptedModel:
    return ScriptedModel(["```python\nprint('hi')\n```"], when_exhausted="repeat_last")


async def test_direct_and_broker_runs_see_the_same_task_json(tmp_path: Path) -> None:
    task = _task(tmp_path, GIVEN)
    direct: list[dict[str, Any]] = []
    await SubAgent(task, model=_model(), sandbox_factory=_recorder(direct)).run()
    brokered: list[dict[str, Any]] = []
    broker = Broker(
        db=tmp_path / "runs.db",
        model=_model(),
        sandbox_factory=_recorder(brokered),
        reap_orphans=False,
    )
    async with broker:
        await broker.result(await broker.submit(task))
    expected = {**find_skill("data-clean").defaults, **GIVEN}
    assert expected != GIVEN  # the skill has defaults the given task.json leaves out
    assert direct and brokered  # (the re-check sandbox, if any, sees the same file)
    assert all(values == expected for values in [*direct, *brokered])
    # the user's own file is never rewritten
    assert json.loads((tmp_path / "given/task.json").read_text()) == GIVEN


def test_the_tasks_own_values_win_and_the_folder_goes_with_its_holder(tmp_path: Path) -> None:
    skill = find_skill("data-clean")
    task = _task(tmp_path, {**GIVEN, "key": ["id"]})
    written = with_skill_defaults(skill, task.inputs)
    (path,) = written.inputs
    assert path != task.inputs[0] and json.loads(path.read_text())["key"] == ["id"]
    del written
    gc.collect()
    assert not path.parent.exists()


def test_a_task_json_that_cannot_pass_is_left_for_preflight_to_refuse(tmp_path: Path) -> None:
    task = _task(tmp_path, {"data": "a.txt"})  # no schema, a data name the pattern refuses
    agent = SubAgent(task, model=_model(), sandbox_factory=_recorder([]))
    assert agent.inputs.paths == task.inputs
    result = anyio.run(agent.run)
    assert result.error is not None and str(task.inputs[0]) in result.error
