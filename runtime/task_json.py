"""The ``task.json`` a skill task's sandbox receives: the skill's ``defaults`` overlaid with
the task's own ``task.json`` (``Skill.task_inputs``, the one merge), whichever way the task
runs — ``SubAgent`` directly, in a broker, on a Ray node, or ``execloop task --param``.

The merged file is written into a private folder that replaces the given ``task.json`` among
the inputs; the folder goes with ``close()`` or with the object that holds it.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from execloop.errors import ConfigError
from execloop.runtime.skills import TASK_JSON, Skill
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = ["TaskJson", "given_task_json", "with_skill_defaults"]


def given_task_json(inputs: Sequence[Path]) -> Path | None:
    """The ``task.json`` among ``inputs`` (a file input lands at the workspace root by name)."""
    return next((path for path in inputs if path.name == TASK_JSON and not path.is_dir()), None)


class TaskJson:
    """``inputs`` with ``values`` as their ``task.json`` (``None``: ``inputs`` as given)."""

    def __init__(self, inputs: Sequence[Path], values: Mapping[str, Any] | None) -> None:
        self.inputs = tuple(inputs)
        self._removal: weakref.finalize[Any, Any] | None = None
        if values is None:
            return
        folder = make_temp_dir("taskjson")
        self._removal = weakref.finalize(self, remove_temp_dir, folder)
        path = folder / TASK_JSON
        path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
        given = given_task_json(self.inputs)
        self.inputs = (*(p for p in self.inputs if p != given), path)

    def close(self) -> None:
        if self._removal is not None:
            self._removal()


def with_skill_defaults(skill: Skill | None, inputs: Sequence[Path]) -> TaskJson:
    """``inputs`` whose ``task.json`` gives ``skill`` its ``defaults`` for what it leaves out.
    A task.json that cannot pass is left as given: ``SubAgent.preflight`` refuses it, with the
    error naming the user's file."""
    if skill is None or not skill.defaults:
        return TaskJson(inputs, None)
    try:
        values = skill.check_task_json(given_task_json(inputs))
    except ConfigError:
        return TaskJson(inputs, None)
    return TaskJson(inputs, values)
