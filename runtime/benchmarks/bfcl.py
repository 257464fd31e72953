"""BFCL multi-turn tasks for ``execloop bench tokens``, from the ``bfcl-eval`` wheel (optional).

The Berkeley Function Calling Leaderboard's multi-turn base set (v3, shipped in bfcl-eval as
``BFCL_v4_multi_turn_base.json``) gives each entry its user turns, the stateful tool classes it
involves (a file system, a trading bot, a travel API...) with their initial state, their
function docs, and the ground-truth calls. Each entry becomes one ``BenchTask``: the user turns
joined into one goal (both flows see one request, which is how this bench compares them), the
classes' methods as tools (their docs turned into JSON Schema), the ground-truth calls as the
code-mode script, and BFCL's own ``state_checker`` against the ground truth run on a fresh state
as the check.

bfcl-eval's declared dependencies are large (vllm clients, sentence-transformers, faiss): install
it with ``pip install --no-deps bfcl-eval mpmath``, which is all these classes import.
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
from collections.abc import Callable
from functools import partial
from importlib import resources
from typing import Any

from pydantic_core import to_jsonable_python

from execloop.errors import ConfigError
from execloop.runtime.benchmarks.suite import BenchTask
from execloop.runtime.bridge.registry import ToolRegistry
from execloop.runtime.bridge.tool import Tool, ToolFailure

__all__ = ["BFCL_SOURCE", "bfcl_tasks"]

BFCL_SOURCE = "bfcl-v3-multi-turn-base"
_DATA = "BFCL_v4_multi_turn_base.json"
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}


def _config() -> Any:
    try:
        return importlib.import_module("bfcl_eval.constants.executable_backend_config")
    except ImportError as exc:
        raise ConfigError(
            "--bfcl needs bfcl-eval: pip install --no-deps bfcl-eval mpmath "
            f"(its data and tool classes then work offline): {exc}"
        ) from exc


def _schema(doc: Any) -> Any:
    """BFCL's parameter docs ("dict", "float", "tuple", "any") as JSON Schema."""
    if isinstance(doc, list):
        return [_schema(item) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out = {key: _schema(value) for key, value in doc.items() if key != "type"}
    if "type" in doc:
        kind = _TYPES.get(doc["type"], doc["type"])
        if kind is not None:
            out["type"] = kind
    if "properties" in doc:
        out["properties"] = {name: _schema(p) for name, p in doc["properties"].items()}
    return out


def _lines(path: str) -> list[dict[str, Any]]:
    text = (resources.files("bfcl_eval") / "data" / path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _instances(entry: dict[str, Any]) -> dict[str, Any]:
    config = _config()
    made = {}
    for name in entry["involved_classes"]:
        module = importlib.import_module(config.CLASS_FILE_PATH_MAPPING[name])
        instance = getattr(module, name)()
        if name not in config.STATELESS_CLASSES:
            initial = copy.deepcopy(entry["initial_config"].get(name, {}))
            instance._load_scenario(initial, long_context=False)
        made[name] = instance
    return made


def _registry(
    entry: dict[str, Any], docs: dict[str, list[dict[str, Any]]], state: Any
) -> ToolRegistry:
    registry = ToolRegistry()
    for name in entry["involved_classes"]:
        for doc in docs[name]:
            if doc["name"] in entry.get("excluded_function", []):
                continue
            method = getattr(state[name], doc["name"])
            registry.add(
                Tool(
                    name=doc["name"],
                    description=doc["description"],
                    input_schema=_schema(doc["parameters"]),
                    origin=f"bfcl:{name}.{doc['name']}",
                    handler=partial(_call, method),
                )
            )
    return registry


async def _call(method: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    try:
        return to_jsonable_python(method(**arguments))
    except (TypeError, ValueError, KeyError) as exc:
        raise ToolFailure(f"{type(exc).__name__}: {exc}") from exc


def _called(call: str) -> str:
    """The function a ground-truth call (``cd(folder='x')``) names."""
    node = ast.parse(call, mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ConfigError(f"BFCL ground truth {call!r} is not a plain function call")
    return node.func.id


def _run_truth(entry: dict[str, Any], truth: list[str]) -> dict[str, Any]:
    state = _instances(entry)
    methods = {
        name: getattr(instance, name)
        for instance in state.values()
        for name in dir(instance)
        if not name.startswith("_")
    }
    for call in truth:
        node = ast.parse(call, mode="eval").body
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        methods[node.func.id](*args, **kwargs)
    return state


def _check(entry: dict[str, Any], truth: list[str], state: Any, answer: str) -> bool:
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import state_checker

    return bool(state_checker(state, _run_truth(entry, truth))["valid"])


def bfcl_tasks(limit: int) -> list[BenchTask]:
    """The first ``limit`` entries of the multi-turn base set as bench tasks."""
    config = _config()
    entries = _lines(_DATA)[:limit]
    answers = {a["id"]: a["ground_truth"] for a in _lines(f"possible_answer/{_DATA}")}
    tasks = []
    for entry in entries:
        docs = {
            name: _lines(f"multi_turn_func_doc/{config.MULTI_TURN_FUNC_DOC_FILE_MAPPING[name]}")
            for name in entry["involved_classes"]
        }
        truth = [call for turn in answers[entry["id"]] for call in turn]
        goal = "\n".join(m["content"] for turn in entry["question"] for m in turn)
        used = sorted({_called(call) for call in truth})
        tools = tuple(_registry(entry, docs, _instances(entry)).names)
        script = "\n".join(
            [f"from execloop_tools import {', '.join(used)}", *truth, "print('done')"]
        )
        tasks.append(
            BenchTask(
                name=entry["id"],
                goal=goal,
                tools=tools,
                script=script + "\n",
                check=partial(_check, entry, truth),
                new_state=partial(_instances, entry),
                tools_for=partial(_registry, entry, docs),
                source=BFCL_SOURCE,
            )
        )
    return tasks
