"""Directory inputs keep their layout on every backend: the prompt's listing, the upload a
script reads and the re-verification's restore all say ``data/sub/a.csv``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execloop.runtime import bounds
from execloop.runtime.check_runner import reverify
from execloop.runtime.checks import CheckSpec, ExpressionCheck
from execloop.runtime.inputs import Inputs
from execloop.runtime.loop import SubAgent
from execloop.runtime.models.base import ModelReply, ModelRequest
from execloop.runtime.run import run_script_async
from execloop.runtime.task import Budget, Task, TaskStatus
from execloop.sandboxes import ExitReason, SandboxSpec, create_sandbox

from .backends import BACKEND_SPECS, make_sandbox

pytestmark = pytest.mark.anyio

READS_NESTED = """\
with open('data/sub/a.csv') as handle:
    rows = len(handle.read().splitlines()) - 1
with open('notes.txt') as handle:
    note = handle.read().strip()
print(rows, 'rows;', note)
"""


@pytest.fixture(params=list(BACKEND_SPECS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.csv").write_text("x,y\n1,2\n3,4\n")
    (data / "sub" / "a.json").write_text('{"rows": 2}')
    (data / "top.txt").write_text("top\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("a file input\n")
    return [data, notes]


async def test_directory_inputs_keep_their_relative_paths(backend: str, inputs: list[Path]) -> None:
    layout = Inputs.collect(inputs)
    expected = {"data/sub/a.csv", "data/sub/a.json", "data/top.txt", "notes.txt"}
    assert {item.name for item in layout.files} == expected
    listing = layout.describe()
    assert all(f"- {name} (" in listing for name in expected), listing

    spec = SandboxSpec(**BACKEND_SPECS[backend])
    outcome = await run_script_async(READS_NESTED, spec=spec, inputs=inputs)
    assert outcome.result.exit_reason is ExitReason.OK, outcome.result.stderr
    assert outcome.result.stdout == "2 rows; a file input\n"
    assert {a.path for a in outcome.artifacts} == expected | {"main.py"}
    assert outcome.artifacts_total_files == 5

    checks: list[CheckSpec] = [ExpressionCheck(path="data/sub/a.json", expr='result["rows"] == 2')]
    async with layout.staged() as staged:
        assert staged.folder is not None
        (outcome_check,) = await reverify(
            checks,
            sandbox_factory=lambda: make_sandbox(backend),
            restore=[staged.folder],
            run=outcome.result,
            check_files_root=None,
        )
        # a check that runs code re-runs in a fresh sandbox the staged folder is uploaded to
        async with make_sandbox(backend) as fresh:
            await fresh.upload(staged.folder)
            again = await fresh.exec(READS_NESTED)
    assert outcome_check.passed, outcome_check.reason
    assert again.stdout == "2 rows; a file input\n", again.stderr


class _Replays:
    """A model that answers with the given scripts in order and keeps every request."""

    name = "replays"
    scripted = True

    def __init__(self, *scripts: str) -> None:
        self.scripts = list(scripts)
        self.requests: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        return ModelReply(model=self.name, script=self.scripts.pop(0), scripted=True)


async def test_the_loop_describes_uploads_and_restores_the_same_layout(
    inputs: list[Path],
) -> None:
    # The script passes a check on an input by rewriting that input: in its own sandbox the
    # check passes; the re-verification restores the original data/sub/a.json and fails it.
    script = READS_NESTED + (
        "import json\njson.dump({'rows': rows}, open('result.json', 'w'))\n"
        "json.dump({'rows': 3}, open('data/sub/a.json', 'w'))\n"
    )
    on_input = ExpressionCheck(path="data/sub/a.json", expr='result["rows"] == 3')
    checks = (ExpressionCheck(expr='result["rows"] == 2'), on_input)
    model = _Replays(script, script)
    task = Task(
        goal="Count the rows of data/sub/a.csv",
        inputs=tuple(inputs),
        checks=checks,
        budget=Budget(max_attempts=2),
    )
    result = await SubAgent(task, model=model, sandbox_factory=create_sandbox).run()
    first, second = (request.messages[0].content for request in model.requests)
    assert "- data/sub/a.csv (12 bytes)\n    | x,y" in first and "- notes.txt (13 bytes)" in first
    assert json.loads(result.answer) == {"rows": 2}  # it read data/sub/a.csv
    assert result.attempt_log[0].failed_checks == [on_input.label()]
    assert "passed in your sandbox but failed when re-run" in second
    assert result.status is TaskStatus.FAILED
    assert {a.path for a in result.artifacts} >= {"data/sub/a.csv", "main.py", "result.json"}


async def test_the_result_lists_a_bounded_manifest_of_a_big_output(tmp_path: Path) -> None:
    # 5,000 files, not 100,000 (that is `execloop run`'s test): the re-verification copies
    # every file through the host twice, which takes minutes on a shared machine
    script = (
        "import json, os\nos.mkdir('many')\n"
        "for i in range(5_000):\n"
        "    open(f'many/f{i:06}', 'w').close()\n"
        "json.dump({'ok': True}, open('result.json', 'w'))\n"
    )
    task = Task(goal="Write many files", checks=(ExpressionCheck(expr='result["ok"]'),))
    result = await SubAgent(task, model=_Replays(script)).run()
    assert result.status is TaskStatus.PASSED, result.checks
    assert len(result.artifacts) == bounds.ARTIFACTS_LISTED
    assert result.artifacts_total_files == 5_002  # and main.py, result.json
    assert len(result.model_dump_json()) < 100_000
