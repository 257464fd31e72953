"""Directory inputs keep their layout on every backend: the prompt's listing, the upload a
script reads and the re-verification's restore all say ``data/sub/a.csv``."""

from __future__ import annotations

from pathlib import Path

import pytest

from execloop.runtime.check_runner import reverify
from execloop.runtime.checks import CheckSpec, ExpressionCheck
from execloop.runtime.inputs import Inputs
from execloop.runtime.run import run_script_async
from execloop.sandboxes import ExitReason, SandboxSpec

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
    assert outcome_check.passed, outcome_check.reason
