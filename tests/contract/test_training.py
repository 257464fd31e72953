"""Acceptance of the training skills, end to end on CPU in the Docker sandbox (train-cpu image):
a scripted sub-agent's LoRA SFT script with a planted bug is caught by a check and fixed on the
next attempt; a run whose sandbox is killed mid-training resumes from its last checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from execloop.runtime.loop import SubAgent
from execloop.runtime.skills import find_skill
from execloop.runtime.task import Budget, Result, Task, TaskStatus
from execloop.sandboxes import SandboxSpec
from execloop.testing import ScriptedModel

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SKILL = find_skill("lora-sft")
(EXAMPLE,) = SKILL.load_examples()
FIXED = EXAMPLE.solution_code()
# The planted bug: the adapter is saved before training, so adapter/ holds the untrained one.
SAVE = 'model.save_pretrained("adapter")\n'
BUGGY = FIXED.replace(SAVE, "").replace("trainer.train(", SAVE + "trainer.train(", 1)
PYTEST_CHECK = next(check.label() for check in SKILL.checks if check.kind == "pytest")


def _task(**spec: object) -> Task:
    return Task(
        goal=EXAMPLE.goal,
        skill=SKILL.name,
        inputs=tuple(EXAMPLE.folder / name for name in EXAMPLE.files),
        sandbox=SandboxSpec(image="execloop/train-cpu", **spec),
        budget=Budget(max_attempts=2),
    )


def _metrics(result: Result) -> dict[str, object]:
    return dict(json.loads(result.answer))


async def test_a_planted_bug_is_caught_by_a_check_and_fixed_on_the_next_attempt() -> None:
    assert BUGGY != FIXED and BUGGY.count(SAVE) == 1
    began = time.monotonic()
    model = ScriptedModel([BUGGY, FIXED], name="lora-sft-planted-bug")
    result = await SubAgent(_task(), model=model, skill=SKILL).run()
    print(f"two attempts and the re-verification took {time.monotonic() - began:.0f} s")
    assert result.status is TaskStatus.PASSED, (result.error, result.attempt_log)
    first, second = result.attempt_log
    assert first.exit_reason == "ok" and PYTEST_CHECK in first.failed_checks  # ran, but wrong
    assert second.failed_checks == []
    artifacts = {artifact.path: artifact for artifact in result.artifacts}
    for path in ("metrics.json", "loss_curve.png", "adapter_manifest.json"):
        assert artifacts[path].size_bytes > 0 and len(artifacts[path].sha256) == 64
    answer = _metrics(result)
    assert answer["eval_loss"] < answer["base_eval_loss"] - 0.3  # type: ignore[operator]
    assert result.scripted


async def test_a_run_killed_mid_training_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir(mode=0o777)
    checkpoints.chmod(0o777)  # the sandbox's user writes to it
    task = _task(checkpoint_dir=checkpoints, checkpoint_size="64m")
    saved = checkpoints / "trainer" / "checkpoint-20"
    async with anyio.create_task_group() as group:  # polls the host folder (10 min at most)
        group.start_soon(SubAgent(task, model=ScriptedModel([FIXED]), skill=SKILL).run)
        for _ in range(3000):
            if (saved / "trainer_state.json").exists():
                break
            await anyio.sleep(0.2)
        group.cancel_scope.cancel()  # kills the sandbox mid-training, as its timeout would
    assert saved.is_dir(), "the first run never reached its step-20 checkpoint"
    result = await SubAgent(task, model=ScriptedModel([FIXED]), skill=SKILL).run()
    assert result.status is TaskStatus.PASSED, (result.error, result.attempt_log)
    answer = _metrics(result)
    print(f"resumed from step {answer['resumed_from_step']} of {answer['steps']}")
    assert 20 <= answer["resumed_from_step"] < answer["steps"]  # type: ignore[operator]
