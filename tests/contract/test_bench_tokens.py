"""``execloop bench tokens`` in replay: code mode in a real bubblewrap sandbox with the tool
bridge, the classic agent through the same SDK client, one loopback model counting both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from execloop.runtime.benchmarks.bfcl import bfcl_tasks
from execloop.runtime.benchmarks.suite import SUITE
from execloop.runtime.benchmarks.tokens import run_task
from execloop.runtime.cli import cli
from execloop.runtime.models.anthropic_model import AnthropicModel
from execloop.runtime.models.openai_model import OpenAIModel
from execloop.testing import ReplayModelServer

pytestmark = pytest.mark.anyio
TASKS = {task.name: task for task in SUITE}


async def test_the_estimate_of_a_replayed_run_is_the_formula_of_its_measured_pieces() -> None:
    with ReplayModelServer() as server:
        async with AnthropicModel(model="replay", base_url=server.base_url, api_key="k") as model:
            ran = await run_task(
                TASKS["delayed_review"], model=model, backend="local", replay=server
            )
    measured, estimate = ran.classic, ran.code.usage_classic_estimate
    assert estimate is not None
    # the ledger, fed only the code-mode run, prices exactly the classic run that happened
    assert estimate.sequential == measured.formula()
    assert estimate.system_tokens == measured.system_tokens
    assert estimate.user_tokens == measured.user_tokens
    assert estimate.calls == len(measured.calls) == 9
    # and the formula fed the measured pieces is what the model reported, caching included
    assert measured.usage.total_input_tokens == estimate.sequential.uncached.input_tokens
    assert measured.usage.cache_read_input_tokens == (
        estimate.sequential.cached.cache_read_input_tokens
    )
    assert measured.usage.cache_creation_input_tokens == (
        estimate.sequential.cached.cache_creation_input_tokens
    )
    comparison = ran.comparison
    assert comparison.code.success and comparison.classic.success
    assert comparison.estimate_ratio == 1.0
    assert comparison.code.input_tokens == ran.code.usage.total_input_tokens
    assert comparison.input_savings > 0.9 and comparison.cached_input_savings > 0.7


async def test_openai_protocol_measures_the_same_classic_input() -> None:
    with ReplayModelServer() as server:
        async with OpenAIModel(model="replay", base_url=server.openai_base_url) as model:
            ran = await run_task(TASKS["restock_two"], model=model, backend="local", replay=server)
    assert ran.comparison.classic.success and ran.comparison.code.success
    assert ran.classic.usage.total_input_tokens == ran.classic.formula().uncached.input_tokens
    assert ran.comparison.estimate_ratio == 1.0


def test_cli_writes_the_page_the_plot_and_json(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks.md"
    args = ["bench", "tokens", "--task", "fx_rate", "--task", "notes_fix", "--out", str(out)]
    done = CliRunner().invoke(
        cli, [*args, "--json", "--tool-docs", "summary"], prog_name="execloop"
    )
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["tool_docs"] == "summary" and "first sentence" in out.read_text()
    assert [t["task"] for t in data["tasks"]] == ["fx_rate", "notes_fix"]
    assert data["method"] == "replayed" and data["tokenizer"].startswith("o200k_base")
    notes = data["tasks"][1]
    assert notes["calls"] == 6 and notes["classic"]["method"] == "replayed"
    assert notes["estimate"]["method"] == "estimated"
    assert "| notes_fix | 6 |" in out.read_text() and "REPLAY" in done.stderr
    assert out.with_name("benchmarks-tokens.png").read_bytes()[:4] == b"\x89PNG"
    assert "cached input saved 33%" in done.stderr  # progress lines on the terminal
    again = CliRunner().invoke(cli, [*args[:4], "--out", str(out)], prog_name="execloop")
    assert again.exit_code == 0 and "notes_fix" not in out.read_text()  # its own page: replaced


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--out", "{mine}"], "is not a benchmark page"),
        (["--task", "nope", "--out", "{docs}"], "no such task"),
        (["--backend", "restricted", "--out", "{docs}"], "has no tool bridge"),
    ],
)
def test_cli_refuses_bad_input_in_one_line_before_any_work(
    tmp_path: Path, args: list[str], says: str
) -> None:
    mine = tmp_path / "notes.md"
    mine.write_text("my own notes\n")
    docs = tmp_path / "docs" / "benchmarks.md"
    argv = [a.format(mine=mine, docs=docs) for a in args]
    done = CliRunner().invoke(cli, ["bench", "tokens", *argv], prog_name="execloop")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.exit_code != 0 and len(lines) == 1 and says in lines[0], done.output
    assert "Traceback" not in done.output and mine.read_text() == "my own notes\n"
    assert not (tmp_path / "docs").exists()


async def test_a_bfcl_multi_turn_task_runs_both_flows_and_is_judged_by_bfcls_checker() -> None:
    (task,) = bfcl_tasks(1)
    assert task.source == "bfcl-v3-multi-turn-base" and "cd" in task.tools
    assert not task.check(task.new_state(), "")  # the untouched state is not the ground truth's
    with ReplayModelServer() as server:
        async with AnthropicModel(model="replay", base_url=server.base_url, api_key="k") as model:
            ran = await run_task(task, model=model, backend="local", replay=server)
    comparison = ran.comparison
    assert comparison.code.success and comparison.classic.success
    assert comparison.calls == 10 and comparison.estimate_ratio == 1.0
    assert ran.code.usage_classic_estimate is not None
    assert ran.code.usage_classic_estimate.sequential == ran.classic.formula()
