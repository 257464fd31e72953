"""Every built-in skill's worked example, end to end: a scripted model replays the example's
solution, the loop runs it in the Docker sandbox, and the skill's own checks accept it."""

from __future__ import annotations

import pytest

from execloop.runtime.loop import SubAgent
from execloop.runtime.models import ScriptedModel
from execloop.runtime.skills import Skill, list_skills
from execloop.runtime.task import Budget, Task, TaskStatus
from execloop.sandboxes import SandboxSpec

pytestmark = pytest.mark.anyio

EXAMPLES = [(skill, example) for skill in list_skills() for example in skill.load_examples()]


def test_every_builtin_skill_ships_an_example() -> None:
    assert {skill.name for skill, _ in EXAMPLES} == {
        "data-clean",
        "data-balance",
        "sql-injection-probe",
        "hparam-config",
        "lora-sft",
        "dpo",
        "eval",
    }


def sandbox_for(skill: Skill) -> SandboxSpec:
    """The training skills name execloop/train; CI builds its CPU variant (same packages)."""
    return SandboxSpec(image="execloop/train-cpu") if skill.sandbox.image else SandboxSpec()


@pytest.mark.parametrize(
    ("skill", "example"), EXAMPLES, ids=[f"{s.name}/{e.name}" for s, e in EXAMPLES]
)
async def test_example_passes_its_skill_checks_in_docker(skill, example) -> None:  # type: ignore[no-untyped-def]
    task = Task(
        goal=example.goal,
        skill=skill.name,
        inputs=tuple(example.folder / name for name in example.files),
        checks=example.checks,
        sandbox=sandbox_for(skill),
        budget=Budget(max_attempts=1),
    )
    model = ScriptedModel([example.solution_code()], name=f"{skill.name}-example")
    result = await SubAgent(task, model=model, skill=skill).run()
    failed = [f"{c.name}: {c.reason}" for c in result.checks if not c.passed]
    assert result.status is TaskStatus.PASSED, (failed, result.error)
    assert result.scripted and result.model.startswith("scripted:")
    assert len(result.checks) == len(skill.checks) + len(example.checks)
    assert {a.path for a in result.artifacts} >= set(example.outputs)


async def test_a_wrong_script_fails_the_skill_checks() -> None:
    skill, example = next((s, e) for s, e in EXAMPLES if s.name == "data-clean")
    wrong = (
        "import shutil, json\nshutil.copy('customers.csv', 'clean.jsonl')\n"
        "json.dump({'rows_in': 17, 'rows_out': 17, 'duplicates_removed': 0, 'invalid_rows': []},"
        " open('result.json', 'w'))\n"
    )
    task = Task(
        goal=example.goal,
        skill=skill.name,
        inputs=tuple(example.folder / name for name in example.files),
        budget=Budget(max_attempts=1),
    )
    result = await SubAgent(task, model=ScriptedModel([wrong]), skill=skill).run()
    assert result.status is TaskStatus.FAILED
    assert any(not c.passed for c in result.checks)
