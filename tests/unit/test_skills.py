"""Skills: the loader's errors, the CLI, and the four built-in skills judged on their examples.

The built-in examples' solution.py run on the host (this Python, in a copy of the inputs) and
their outputs are judged here with jsonschema, RestrictedPython and plain Python, mirroring the
check specs; each skill also gets a deliberately wrong output that a check must reject.
"""

from __future__ import annotations

import json
import math
import operator
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from RestrictedPython.compile import compile_restricted_eval
from RestrictedPython.Guards import safe_builtins

from execloop.errors import ConfigError, SkillError
from execloop.runtime import skills as skills_module
from execloop.runtime.checks import (
    CheckSpec,
    DatasetCheck,
    ExitStatusCheck,
    ExpressionCheck,
    JsonSchemaCheck,
    PytestCheck,
)
from execloop.runtime.skills import (
    Skill,
    builtin_skills_dir,
    find_skill,
    list_skills,
    load_example,
    load_skill,
)
from execloop.sandboxes.spec import SandboxSpec

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = [
    "data-balance",
    "data-clean",
    "dpo",
    "eval",
    "hparam-config",
    "lora-sft",
    "sql-injection-probe",
]
# Their examples run on the host's Python; the training skills' need the train image
# (tests/contract/test_skill_examples.py runs every example in Docker).
ON_THE_HOST = [name for name in BUILTIN if name not in ("dpo", "eval", "lora-sft")]


def _execloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


# -- a minimal judge mirroring the check specs (the real runner runs them in the sandbox) -----


def _judge(check: CheckSpec, skill: Skill, work: Path, exit_code: int) -> str | None:
    """Why ``check`` fails on the outputs in ``work``; None when it passes."""
    if isinstance(check, ExitStatusCheck):
        return None if exit_code == 0 else f"exit status {exit_code}"
    if isinstance(check, JsonSchemaCheck):
        data = json.loads((work / check.path).read_text())
        validator = jsonschema.validators.validator_for(check.json_schema)(check.json_schema)
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(data)]
        return "; ".join(errors) or None
    if isinstance(check, ExpressionCheck):
        compiled = compile_restricted_eval(check.expr)
        assert compiled.code is not None, compiled.errors
        scope = {"__builtins__": safe_builtins, "_getitem_": operator.getitem}
        scope["result"] = json.loads((work / check.path).read_text())
        return None if eval(compiled.code, scope) else f"false: {check.expr}"
    if isinstance(check, DatasetCheck):
        return _judge_dataset(check, work)
    if isinstance(check, PytestCheck):
        shutil.copy(skill.folder / check.file, work / Path(check.file).name)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", Path(check.file).name],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        (work / Path(check.file).name).unlink()
        return None if done.returncode == 0 else done.stdout[-2000:]
    raise AssertionError(f"no judge for {check.kind}")


def _judge_dataset(check: DatasetCheck, work: Path) -> str | None:
    assert (check.format or Path(check.path).suffix[1:]) == "jsonl"
    lines = (work / check.path).read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    problems = [f"{len(rows)} rows < {check.min_rows}"] if len(rows) < check.min_rows else []
    missing = [c for c in check.required_columns if any(row.get(c) is None for row in rows)]
    problems += [f"missing columns {missing}"] if missing else []
    if check.unique_by is not None:
        columns = check.unique_by
        keys = [
            json.dumps([r.get(c) for c in columns] if columns else r, sort_keys=True) for r in rows
        ]
        problems += ["duplicate rows"] if len(set(keys)) != len(keys) else []
    if check.label_column and check.max_imbalance:
        counts = Counter(str(row[check.label_column]) for row in rows).values()
        if max(counts) / min(counts) > check.max_imbalance:
            problems.append(f"imbalance {max(counts) / min(counts):.2f} > {check.max_imbalance}")
    return "; ".join(problems) or None


def _failures(skill: Skill, work: Path, exit_code: int = 0) -> dict[str, str]:
    checks = [*skill.checks, *skill.load_examples()[0].checks]
    verdicts = {check.label(): _judge(check, skill, work, exit_code) for check in checks}
    return {name: why for name, why in verdicts.items() if why is not None}


def _run_example(name: str, work: Path) -> tuple[Skill, subprocess.CompletedProcess[str]]:
    skill = find_skill(name)
    example = skill.load_examples()[0]
    for file, data in example.input_files().items():
        (work / file).write_bytes(data)
    done = subprocess.run(
        [sys.executable, str(example.folder / example.solution)],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return skill, done


def _edit(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# -- built-in skills --------------------------------------------------------------------------


def test_all_is_sorted_and_resolves() -> None:
    assert skills_module.__all__ == sorted(skills_module.__all__)
    assert all(hasattr(skills_module, name) for name in skills_module.__all__)


def test_the_builtin_skills_are_listed() -> None:
    assert [skill.name for skill in list_skills()] == BUILTIN
    assert builtin_skills_dir().is_dir()


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_skill_loads_with_examples_and_valid_inputs(name: str) -> None:
    skill = find_skill(name)
    assert skill.folder.name == name and "## How it is judged" in skill.instructions
    kinds = {check.kind for check in skill.checks}
    assert {"exit_status", "json_schema", "expression", "pytest"} <= kinds
    (example,) = skill.load_examples()
    assert "solution.py" not in example.files and "task.json" in example.files
    task = json.loads((example.folder / "task.json").read_text())
    jsonschema.validate(task, skill.inputs)
    assert skill.task_inputs(task) == {**skill.defaults, **task}
    assert skill.sandbox_spec().timeout_s == skill.sandbox.timeout_s


@pytest.mark.parametrize("name", BUILTIN)
def test_cli_validates_each_builtin_skill(name: str) -> None:
    done = _execloop("skills", "validate", str(ROOT / "skills" / name))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ok {name}"


def test_cli_lists_and_shows_skills() -> None:
    listed = _execloop("skills", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [item["name"] for item in json.loads(listed.stdout)] == BUILTIN
    table = _execloop("skills", "list")
    assert table.returncode == 0 and "hparam-config" in table.stdout
    shown = _execloop("skills", "show", "data-clean")
    assert shown.returncode == 0, shown.stderr
    assert "data-clean 1.0.0" in shown.stdout and "# Clean a dataset" in shown.stdout
    unknown = _execloop("skills", "show", "nope")
    assert unknown.returncode == 2 and "available: data-balance" in unknown.stderr


def test_hparam_check_defaults_match_the_front_matter() -> None:
    text = (find_skill("hparam-config").folder / "checks" / "test_config.py").read_text()
    scope: dict[str, Any] = {}
    exec(next(line for line in text.splitlines() if line.startswith("DEFAULTS")), scope)
    assert scope["DEFAULTS"].items() <= find_skill("hparam-config").defaults.items()


# -- loader errors ----------------------------------------------------------------------------

GOOD = """\
---
name: demo
description: A demo skill.
version: 0.1.0
inputs:
  type: object
  properties:
    n: {type: integer}
defaults: {n: 1}
checks:
  - kind: exit_status
  - kind: expression
    expr: result["n"] > 0
sandbox: {memory: 2g, timeout_s: 90}
tools: [search]
---
# Demo

Write result.json.
"""


def _skill_file(tmp_path: Path, text: str, folder: str = "demo") -> Path:
    (tmp_path / folder).mkdir(exist_ok=True)
    path = tmp_path / folder / "SKILL.md"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str, folder: str = "demo") -> str:
    path = _skill_file(tmp_path, text, folder)
    with pytest.raises(SkillError) as caught:
        load_skill(path.parent)
    assert str(path) in str(caught.value)
    return str(caught.value)


def test_a_good_skill_loads_and_merges_its_sandbox_requirements(tmp_path: Path) -> None:
    skill = load_skill(_skill_file(tmp_path, GOOD))
    assert (skill.name, skill.instructions) == ("demo", "# Demo\n\nWrite result.json.")
    merged = skill.sandbox_spec(SandboxSpec(memory=4 * 1024**3, timeout_s=30, env={"A": "1"}))
    assert (merged.memory, merged.timeout_s, merged.env) == (4 * 1024**3, 90, {"A": "1"})
    conflict = load_skill(_skill_file(tmp_path, GOOD.replace("timeout_s: 90", "image: x:1")))
    with pytest.raises(ConfigError, match="image"):
        conflict.sandbox_spec(SandboxSpec(image="y:2"))
    with pytest.raises(ConfigError, match="n: 'x' is not of type 'integer'"):
        skill.task_inputs({"n": "x"})


def test_missing_front_matter(tmp_path: Path) -> None:
    assert "no front matter" in _error(tmp_path, "# Demo\n\nno YAML here\n")
    assert "not closed" in _error(tmp_path, "---\nname: demo\n")


def test_yaml_syntax_error_shows_the_file_line(tmp_path: Path) -> None:
    text = GOOD.replace("version: 0.1.0", "version: [0.1.0")  # line 4 of the file
    message = _error(tmp_path, text)
    assert "YAML syntax error" in message and "SKILL.md:5:" in message and "(line 4)" in message


def test_name_must_equal_the_folder(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD, folder="other")
    assert "name: 'demo' must equal the folder name 'other'" in message


def test_bad_check_kind(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("kind: exit_status", "kind: exit_code"))
    assert "checks[0]: unknown check kind 'exit_code'; expected one of: exit_status" in message


def test_empty_and_unparsable_expressions(tmp_path: Path) -> None:
    empty = _error(tmp_path, GOOD.replace('expr: result["n"] > 0', 'expr: ""'))
    assert "checks[1].expr: an expression check needs a non-empty expr" in empty
    broken = _error(tmp_path, GOOD.replace('expr: result["n"] > 0', 'expr: result["n"] >'))
    assert "checks[1].expr: check expression 'result[\"n\"] >' does not compile" in broken
    refused = _error(tmp_path, GOOD.replace('expr: result["n"] > 0', "expr: result._n > 0"))
    assert '"_n" is an invalid attribute name' in refused  # RestrictedPython's policy, up front


def test_pytest_check_file_must_exist(tmp_path: Path) -> None:
    text = GOOD.replace("  - kind: exit_status", "  - kind: pytest\n    file: checks/test_x.py")
    assert "checks[0].file: pytest file 'checks/test_x.py' not found" in _error(tmp_path, text)
    escape = text.replace("checks/test_x.py", "../test_x.py")
    assert "without '..'" in _error(tmp_path, escape)


def test_inputs_must_be_a_valid_json_schema(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("{type: integer}", "{type: integr}"))
    assert "inputs: not a valid JSON Schema at properties.n.type" in message


def test_unknown_sandbox_field_lists_the_known_ones(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("timeout_s: 90", "gpu: 1"))
    assert "sandbox.gpu: unknown field; expected one of: backend," in message
    assert "sandbox.memory: expected a size" in _error(tmp_path, GOOD.replace("2g", "lots"))


def test_several_problems_in_one_message(tmp_path: Path) -> None:
    text = GOOD.replace("version: 0.1.0", "version: 1.0").replace("tools: [search]", "tool: []")
    message = _error(tmp_path, text)
    assert "invalid (2 problems)" in message
    assert "version: expected a semantic version such as 1.0.0 as a string (quote it)" in message
    assert "tool: unknown field; expected one of: name, description, version" in message


def test_defaults_must_fit_the_inputs(tmp_path: Path) -> None:
    message = _error(tmp_path, GOOD.replace("defaults: {n: 1}", "defaults: {n: x, m: 2}"))
    assert "defaults.m: not a property of inputs (n)" in message
    assert "defaults.n: 'x' is not of type 'integer'" in message


def test_unknown_skill_lists_the_available_ones(tmp_path: Path) -> None:
    _skill_file(tmp_path, GOOD)
    with pytest.raises(SkillError, match=r"unknown skill 'nope'; available: demo"):
        find_skill("nope", tmp_path)
    assert find_skill("demo", tmp_path).name == "demo"


def test_cli_validate_reports_each_bad_skill_and_exits_1(tmp_path: Path) -> None:
    _skill_file(tmp_path, GOOD)
    _skill_file(tmp_path, GOOD.replace("name: demo", "name: wrong"), folder="bad")
    done = _execloop("skills", "validate", str(tmp_path), str(ROOT / "skills" / "data-clean"))
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["ok demo", "ok data-clean"]
    assert "name: 'wrong' must equal the folder name 'bad'" in done.stderr


# -- the examples: solutions pass, deliberately wrong outputs fail -----------------------------


@pytest.mark.parametrize("name", ON_THE_HOST)
def test_example_solution_passes_every_check(name: str, tmp_path: Path) -> None:
    skill, done = _run_example(name, tmp_path)
    assert done.stdout.strip()
    assert _failures(skill, tmp_path) == {}
    for output in skill.load_examples()[0].outputs:
        assert (tmp_path / output).is_file()


def test_data_clean_rejects_an_uncleaned_copy(tmp_path: Path) -> None:
    skill, _ = _run_example("data-clean", tmp_path)
    raw = (tmp_path / "customers.csv").read_text().splitlines()
    header = raw[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in raw[1:]]
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _edit(tmp_path / "result.json", rows_out=17, duplicates_removed=0, invalid_rows=[])
    failed = _failures(skill, tmp_path)
    assert "clean.jsonl is readable and has no duplicate rows" in failed
    pytest_check = next(c.label() for c in skill.checks if c.kind == "pytest")
    assert "is not of type 'integer'" in failed[pytest_check]


def test_data_clean_rejects_a_report_that_loses_rows(tmp_path: Path) -> None:
    skill, _ = _run_example("data-clean", tmp_path)
    _edit(tmp_path / "result.json", duplicates_removed=0)
    assert "every input row is accounted for" in _failures(skill, tmp_path)


def test_data_balance_rejects_an_unbalanced_copy(tmp_path: Path) -> None:
    skill, _ = _run_example("data-balance", tmp_path)
    shutil.copy(tmp_path / "reviews.jsonl", tmp_path / "balanced.jsonl")
    result = json.loads((tmp_path / "result.json").read_text())
    _edit(tmp_path / "result.json", after=result["before"])  # an honest report of no change
    failed = _failures(skill, tmp_path)
    assert "the output is balanced enough" in failed
    assert "imbalance 7.00 > 1.5" in failed["balanced.jsonl is balanced by label"]
    _edit(tmp_path / "result.json", after=result["after"])  # now it lies about the output
    lied = _failures(skill, tmp_path)
    assert "after.counts" in lied[next(c.label() for c in skill.checks if c.kind == "pytest")]


def test_sql_probe_rejects_a_missed_injection_and_a_fabricated_one(tmp_path: Path) -> None:
    skill, _ = _run_example("sql-injection-probe", tmp_path)
    pytest_check = next(c.label() for c in skill.checks if c.kind == "pytest")
    _edit(tmp_path / "result.json", vulnerable=False, successful=[])
    missed = _failures(skill, tmp_path)
    assert "reported not vulnerable" in missed[pytest_check]
    assert "the f-string query is flagged" in missed
    fake = [{"payload": "alice", "category": "other", "effect": "returned 1 row"}]
    _edit(tmp_path / "result.json", vulnerable=True, successful=fake)
    assert "no effect when replayed" in _failures(skill, tmp_path)[pytest_check]


def test_sql_probe_finds_nothing_in_a_parameterized_query(tmp_path: Path) -> None:
    skill = find_skill("sql-injection-probe")
    example = skill.load_examples()[0]
    for file, data in example.input_files().items():
        (tmp_path / file).write_bytes(data)
    (tmp_path / "target.py").write_text(
        "def find_user(conn, name):\n"
        "    query = 'SELECT id, name, email FROM users WHERE name = ? AND active = 1'\n"
        "    return conn.execute(query, (name,)).fetchall()\n"
    )
    solution = example.folder / example.solution
    subprocess.run([sys.executable, str(solution)], cwd=tmp_path, check=True, capture_output=True)
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["vulnerable"] is False and result["payloads_tried"] >= 12
    generic = {c.label(): _judge(c, skill, tmp_path, 0) for c in skill.checks}
    assert generic == dict.fromkeys(generic)
    fake = [{"payload": "' OR '1'='1", "category": "tautology", "effect": "returned 3 rows"}]
    _edit(tmp_path / "result.json", vulnerable=True, successful=fake)
    assert _judge(skill.checks[-1], skill, tmp_path, 0) is not None


def test_hparam_config_rejects_a_config_that_does_not_fit(tmp_path: Path) -> None:
    skill, _ = _run_example("hparam-config", tmp_path)
    pytest_check = next(c.label() for c in skill.checks if c.kind == "pytest")
    _edit(tmp_path / "config.json", per_device_batch_size=16)  # no checkpointing: ~80 GB
    lied = _failures(skill, tmp_path)
    assert "estimated_memory_gb: reported 16.156" in lied[pytest_check]
    _edit(tmp_path / "result.json", estimated_memory_gb=81.07, effective_batch_size=128)
    honest = _failures(skill, tmp_path)
    assert "the estimated memory fits one GPU" in honest
    _edit(tmp_path / "config.json", gradient_accumulation_steps=64, lora=None)
    broken = _failures(skill, tmp_path)
    assert "effective batch size within [8, 512]" in broken
    schema_check = "config.json is a complete, consistent training config"
    assert "None is not of type 'object'" in broken[schema_check]


def test_hparam_estimate_matches_a_hand_computation() -> None:
    # qlora 7B, batch 2, 1024 tokens, no checkpointing: 3.85 + 0.7168 + 9.2107 GB, x1.1, +1.
    expected = 1.1 * (7e9 * 0.55 / 1e9 + 7e9 * 16 * 4e-4 * 16 / 1e9 + 2 * 1024 * 1.7 * 7**0.5 / 1e3)
    assert math.isclose(expected + 1.0, 16.156, abs_tol=1e-3)


def test_example_solution_is_decoded_as_python_decodes_it(tmp_path: Path) -> None:
    skill = load_skill(_skill_file(tmp_path, GOOD))
    folder = skill.folder / "examples" / "latin"
    folder.mkdir(parents=True)
    (folder / "solution.py").write_bytes(b'# -*- coding: latin-1 -*-\nprint("caf\xe9")\n')
    (folder / "in.txt").write_text("x")
    (folder / "example.yaml").write_text("goal: g\nfiles: [in.txt]\n")
    example = load_example(folder, skill_folder=skill.folder)
    assert 'print("café")' in example.solution_code()  # PEP 263: the cookie names latin-1
    (folder / "solution.py").write_bytes(b'print("caf\xe9")\n')  # no cookie: UTF-8, and not
    with pytest.raises(SkillError, match=r"solution\.py: cannot decode the script"):
        example.solution_code()


def test_a_training_skill_runs_on_either_train_image_and_no_other() -> None:
    skill = find_skill("lora-sft")
    assert skill.sandbox_spec().image == "execloop/train"
    for image in ("execloop/train-cpu", "execloop/train-cpu:7dbaba1afd6c"):
        assert skill.sandbox_spec(SandboxSpec(image=image)).image == image
    with pytest.raises(ConfigError, match="needs sandbox image='execloop/train'"):
        skill.sandbox_spec(SandboxSpec(image="execloop/python"))


def test_an_example_may_list_a_folder_of_inputs() -> None:
    (example,) = find_skill("eval").load_examples()
    files = example.input_files()
    assert "base_model/model.safetensors" in files and "adapter/adapter_config.json" in files
