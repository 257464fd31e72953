"""The report a person reads, rendered from a real demo run's store: the demo's tasks through the
broker (scripted models, the real tool bridge, Docker sandboxes), plus one task left unfinished.
Every figure in the sentences and tables is checked against the ledger in the database."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from execloop.runtime.broker import Broker, summarize_run
from execloop.runtime.demo import demo_model, demo_registry, demo_tasks
from execloop.runtime.report import write_report
from execloop.runtime.store import TaskStore
from execloop.runtime.task import Result, Task
from execloop.runtime.tokens import TOKENIZER_NAME

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Rendered:
    def __init__(self, out: Path, results: dict[str, Result], goals: dict[str, str]) -> None:
        self.out = out
        self.goals = goals
        self.markdown = (out / "report.md").read_text(encoding="utf-8")
        self.html = (out / "report.html").read_text(encoding="utf-8")
        self.results = results

    def row(self, task_id: str, after_heading: str) -> list[str]:
        section = self.markdown.split(f"## {after_heading}\n", 1)[1]
        line = next(x for x in section.splitlines() if x.startswith(f"| {task_id} |"))
        return line.strip("| ").split(" | ")

    def sentence(self, task_id: str) -> str:
        return next(x for x in self.markdown.splitlines() if x.startswith(f"- **{task_id}**"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    folder = tmp_path_factory.mktemp("demo")
    store = TaskStore(folder / "execloop.db")

    tasks = demo_tasks()  # as `execloop demo` runs them: Docker (the skills' checks need pandas)

    async def main() -> tuple[str, list[Result]]:
        async with Broker(db=store, model=demo_model, registry=demo_registry) as broker:
            results = await broker.map(tasks)
            # a task the broker never ran: how a crashed run's leftovers look to a report
            left = Task(id="left-behind", goal="Count the rows of a file that never arrived.")
            store.add_task(left, broker.run_id, owner="gone", lease_s=60)
            return broker.run_id, results

    run_id, results = anyio.run(main)
    write_report(summarize_run(store, run_id), folder / "report")
    store.close()
    goals = {task.id: task.goal for task in tasks}
    return Rendered(folder / "report", {result.task_id: result for result in results}, goals)


def test_every_demo_task_passed_and_most_call_tools(rendered: Rendered) -> None:
    assert all(r.status == "passed" for r in rendered.results.values())
    calls = [r.usage_classic_estimate.calls for r in rendered.results.values()]
    with_calls = [n for n in calls if n]
    assert len(with_calls) > len(calls) / 2 and min(with_calls) >= 5
    said = f"{len(with_calls)} of {len(calls)} tasks called tools"
    assert f"{said} ({min(with_calls)} to {max(with_calls)} calls each)" in rendered.markdown


def test_one_sentence_per_task_with_the_ledgers_numbers(rendered: Rendered) -> None:
    for task_id, result in rendered.results.items():
        text = rendered.sentence(task_id)
        estimate = result.usage_classic_estimate
        assert estimate is not None
        checks = len(result.checks)
        assert f"was asked to “{' '.join(rendered.goals[task_id].split())[:60]}" in text
        assert f"It passed all {checks} check{'s' * (checks != 1)} in 1 attempt." in text
        code, classic = result.usage.total_input_tokens, estimate.sequential.uncached
        if estimate.calls:
            assert f"Code mode read {code:,} input tokens" in text
            assert f"would have read {classic.total_input_tokens:,} (estimated)" in text
            assert f"made its {estimate.calls} tool calls itself" in text
            assert f"their results ({estimate.result_tokens:,} tokens) stayed" in text
        else:  # nothing to save, and why code mode costs more here: it writes a script
            assert "It made no tool calls, so code mode had nothing to save" in text
            output = result.usage.output_tokens
            assert f"code mode wrote a {output:,}-token script" in text
            assert f"only its {classic.output_tokens:,}-token answer" in text


def test_token_table_matches_the_ledger_and_names_each_figures_method(
    rendered: Rendered,
) -> None:
    for task_id, result in rendered.results.items():
        estimate = result.usage_classic_estimate
        assert estimate is not None
        row = rendered.row(task_id, "Tokens per task")
        assert row[1:3] == [
            f"{result.usage.total_input_tokens:,}",
            f"{result.usage.output_tokens:,}",
        ]
        assert row[3] == f"replayed, counted by {TOKENIZER_NAME}"
        assert row[4] == str(estimate.calls + 1)  # turns: one per call, then the answer
        assert row[5] == f"{estimate.sequential.uncached.total_input_tokens:,}"
        assert row[7] == f"estimated, counted by {TOKENIZER_NAME}"
        assert row[9] == f"{estimate.parallel.uncached.total_input_tokens:,}"
    headers = [line for line in rendered.markdown.splitlines() if line.startswith("| task |")]
    assert headers and not any("[" in line or "seq." in line for line in headers)
    for term in ("input", "output", "how obtained", "turns", "classic, calls batched"):
        assert rendered.markdown.count(f"- **{term}**:") == 1  # defined once
    assert rendered.markdown.count("**Classic flow**: the usual tool-calling agent") == 1
    assert "assumed to ask in one turn for every call whose inputs it already has" in (
        rendered.markdown
    )


def test_goal_checks_model_backend_date_and_the_unfinished_task(rendered: Rendered) -> None:
    text = rendered.markdown
    assert re.search(r"Run started \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert "Sandbox backend: docker." in text and "(scripted)" in text
    assert "**Scripted model**" in text
    for task_id, result in rendered.results.items():
        assert rendered.row(task_id, "Tasks")[3] == f"{len(result.checks)} of {len(result.checks)}"
        for check in result.checks:
            assert f"| {task_id} | {check.name.replace('|', chr(92) + '|')} | passed |" in text
    assert "- **left-behind** was asked to “Count the rows of a file that never arrived”." in text
    assert "**Unfinished** (queued when this report was written)" in text
    assert rendered.row("left-behind", "Tasks")[1] == "unfinished (queued)"


def test_the_turn_by_turn_plot_is_written_linked_and_embedded(rendered: Rendered) -> None:
    most = max(rendered.results.values(), key=lambda r: r.usage_classic_estimate.calls)
    assert f"## Input tokens turn by turn\n\nOn {most.task_id}, the classic flow takes" in (
        rendered.markdown
    )
    link = f"![{most.task_id}: cumulative input tokens per turn, both flows](report-turns.png)"
    assert link in rendered.markdown
    png = (rendered.out / "report-turns.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    embedded = re.findall(r'src="data:image/png;base64,', rendered.html)
    assert len(embedded) == 3  # turns, tokens per task, timeline
