"""Checkpoints and resume: a script that saves its step to $EXECLOOP_CHECKPOINT_DIR is killed
by its timeout mid-run, and the next attempt (a new sandbox) resumes from the saved step —
on every backend that can mount the directory; the others refuse it clearly. A run whose
checkpoints outgrow checkpoint_size is stopped and told why."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from execloop.errors import ConfigError
from execloop.runtime.broker import Broker
from execloop.runtime.checkpoints import CHECKPOINTS_FOLDER
from execloop.runtime.checks import ExpressionCheck
from execloop.runtime.loop import SubAgent
from execloop.runtime.task import Budget, Task, TaskStatus
from execloop.sandboxes import ExitReason, SandboxSpec
from execloop.testing import ScriptedModel
from tests.contract.backends import make_sandbox
from tests.contract.checkpoint_child import trains
from tests.contract.test_broker import reap_temp_dirs_of

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]

STEPS = 30
TRAINS = trains(STEPS)


def _task(backend: str, *, timeout_s: float = 2.0) -> Task:
    return Task(
        id=f"resume-{backend}",
        goal="Train for 30 steps, checkpointing each one.",
        sandbox=SandboxSpec(backend=backend, timeout_s=timeout_s, checkpoint_size="1m"),
        checks=(ExpressionCheck(expr=f'result["step"] == {STEPS}'),),
        budget=Budget(max_attempts=6),
    )


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["docker", "local"])
async def test_a_run_killed_by_its_timeout_resumes_from_its_checkpoint(backend: str) -> None:
    model = ScriptedModel([TRAINS], when_exhausted="repeat_last")
    result = await SubAgent(_task(backend), model=model).run()
    assert result.status is TaskStatus.PASSED, result.error or result.attempt_log
    log = result.attempt_log
    assert log[0].exit_reason == ExitReason.TIMEOUT.value  # killed mid-run, not finished
    resumed_from = json.loads(result.answer)["resumed_from"]
    assert 0 < resumed_from < STEPS, resumed_from  # the last attempt did not start over


@pytest.mark.docker
async def test_a_broker_keeps_the_checkpoints_beside_its_database_until_the_result(
    tmp_path: Path,
) -> None:
    database = tmp_path / "runs.db"
    folder = tmp_path / CHECKPOINTS_FOLDER / "resume-docker"
    folder.mkdir(parents=True)  # left by a broker that died mid-task
    (folder / "state.json").write_text(json.dumps({"step": 20}))
    folder.chmod(0o777)  # the sandbox user writes to it; a fresh folder is chowned instead
    (folder / "state.json").chmod(0o666)
    model = ScriptedModel([TRAINS], when_exhausted="repeat_last")
    async with Broker(model=model, db=database) as broker:
        (result,) = await broker.map([_task("docker")])
    assert result.status is TaskStatus.PASSED, result.error
    assert json.loads(result.answer)["resumed_from"] == 20  # resumed, on its first attempt
    assert result.attempts == 1
    assert not folder.exists()  # the task has its result: its checkpoints are gone


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["docker", "local"])
async def test_a_run_that_outgrows_checkpoint_size_is_stopped_and_told(backend: str) -> None:
    fills = (
        "import os, time\n"
        "folder = os.environ['EXECLOOP_CHECKPOINT_DIR']\n"
        "open(os.path.join(folder, 'huge.pt'), 'wb').write(b'x' * 3 * 2**20)\n"
        "time.sleep(60)\n"
    )
    task = Task(
        goal="Save a checkpoint.",
        sandbox=SandboxSpec(backend=backend, timeout_s=50, checkpoint_size="1m"),
        budget=Budget(max_attempts=1),
    )
    result = await SubAgent(task, model=ScriptedModel([fills])).run()
    assert result.status is TaskStatus.FAILED
    (attempt,) = result.attempt_log
    assert attempt.exit_reason == ExitReason.KILLED.value  # stopped by the host, not its timeout
    failed = {check.name: check.reason for check in result.checks if not check.passed}
    assert "over checkpoint_size 1.0 MB" in failed["checkpoint_size"]


@pytest.mark.docker
async def test_a_cancelled_task_leaves_no_checkpoints(tmp_path: Path) -> None:
    state = tmp_path / CHECKPOINTS_FOLDER / "resume-local" / "state.json"
    model = ScriptedModel([trains(600)], when_exhausted="repeat_last")
    async with Broker(model=model, db=tmp_path / "runs.db") as broker:
        task_id = await broker.submit(_task("local", timeout_s=120))
        with anyio.fail_after(120):
            while not state.exists():  # noqa: ASYNC110 - another process writes it
                await anyio.sleep(0.05)
        assert await broker.cancel(task_id)
        result = await broker.result(task_id)
    assert result.error == "cancelled"
    assert not state.parent.exists()


@pytest.mark.docker
def test_a_broker_killed_mid_training_resumes_the_task_from_its_checkpoint(tmp_path: Path) -> None:
    database = tmp_path / "runs.db"
    command = [sys.executable, "-m", "tests.contract.checkpoint_child", str(database)]
    state = tmp_path / CHECKPOINTS_FOLDER / "trains-through-a-crash" / "state.json"
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        saved = 0
        for _ in range(1200):  # until it has trained a few steps (2 minutes at most)
            with contextlib.suppress(OSError, ValueError):
                saved = json.loads(state.read_text())["step"]
            if saved >= 5 or first.poll() is not None:
                break
            time.sleep(0.1)
        assert first.poll() is None and saved >= 5, "the broker never started training"
    finally:
        first.kill()  # SIGKILL: no clean-up of its own; its janitor removes the sandbox
        first.wait()
        reap_temp_dirs_of(first.pid)
    second = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert second.returncode == 0, second.stderr[-2000:]
    status, answer = second.stdout.split(" ", 1)
    assert status == "passed"
    assert json.loads(answer)["resumed_from"] >= saved  # not from step 0
    assert not state.parent.exists()


def test_checkpoint_size_is_checked_after_each_run(tmp_path: Path) -> None:
    from execloop.runtime.checkpoints import TaskCheckpoints

    checkpoints = TaskCheckpoints.open(
        SandboxSpec(checkpoint_size="1m"), task_id="t/1", root=tmp_path
    )
    assert checkpoints.folder is not None and checkpoints.folder.parent == tmp_path
    assert checkpoints.spec.checkpoint_dir == checkpoints.folder
    (checkpoints.folder / "small").write_bytes(b"x" * 1000)
    assert checkpoints.check() is None
    (checkpoints.folder / "big").write_bytes(b"x" * 2 * 1024**2)
    over = checkpoints.check()
    assert over is not None and not over.passed
    assert "over checkpoint_size 1.0 MB" in over.reason and "delete older" in over.reason
    checkpoints.discard()
    assert not checkpoints.folder.exists()


@pytest.mark.parametrize(
    ("backend", "says"),
    [
        ("restricted", "restricted backend cannot honour checkpoint_size"),
        ("jupyter-docker", "use backend='docker' or 'local' for checkpoints"),
    ],
)
def test_backends_that_cannot_mount_it_refuse_clearly(backend: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        make_sandbox(backend, checkpoint_size="1m")


def test_a_single_run_refuses_checkpoint_size_before_anything_starts() -> None:
    from execloop.runtime.run import run_script

    with pytest.raises(ConfigError, match="a single run does not have: use a task"):
        run_script("print(1)", spec={"checkpoint_size": "1m"})


@pytest.mark.docker
def test_execloop_task_checkpoint_size_resumes_a_killed_attempt(tmp_path: Path) -> None:
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps([TRAINS] * 6))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "execloop.runtime.cli", "task", "Train for 30 steps."),
            *("--model", f"scripted:{replies}", "--backend", "local", "--timeout", "2"),
            *("--checkpoint-size", "1m", "--max-attempts", "6", "--json"),
            *("--check", f'result["step"] == {STEPS}'),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["attempt_log"][0]["exit_reason"] == "timeout"
    assert 0 < json.loads(result["answer"])["resumed_from"] < STEPS
    bad = subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", "task", "x", "--checkpoint-size", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "--checkpoint-size" in bad.stderr
