"""The run report: both files, the totals, Critical Steps, time, and two readable PNG plots."""

from __future__ import annotations

import base64
import re
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from execloop.runtime.classic import CallTrace, estimate_classic
from execloop.runtime.ledger import Usage
from execloop.runtime.report import (
    RunSummary,
    StageSummary,
    TaskSummary,
    critical_path,
    critical_steps,
    write_report,
)
from execloop.runtime.report_plots import Span, timeline_png, tokens_png
from execloop.runtime.task import TaskStatus
from execloop.runtime.tokens import TOKENIZER_NAME

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _task(
    task_id: str, stage: str, steps: int, start: float, end: float, calls: int, **extra: object
) -> TaskSummary:
    traces = [
        CallTrace(tool="query", arguments=f'{{"n": {i}}}', result="row, " * 200, depends_on=())
        for i in range(calls)
    ]
    return TaskSummary.model_validate(
        {
            "task_id": task_id,
            "status": TaskStatus.PASSED,
            "attempts": 2,
            "steps": steps,
            "stage": stage,
            "usage": Usage(input_tokens=900, output_tokens=150, cache_read_input_tokens=3000),
            "classic": estimate_classic(system="system " * 300, user="do it", calls=traces),
            "started_at": T0 + timedelta(seconds=start),
            "ended_at": T0 + timedelta(seconds=end),
            **extra,
        }
    )


@pytest.fixture
def run() -> RunSummary:
    # prep: a (3 steps, 0-10 s) and b (5 steps, 0-6 s) in parallel; train: c (4 steps, 10-30 s)
    return RunSummary(
        run_id="run-7",
        tasks=[
            _task("a", "prep", 3, 0, 10, calls=5),
            _task("b", "prep", 5, 0, 6, calls=20, scripted=True),
            _task("c", "train", 4, 10, 30, calls=60),
        ],
        stages=[
            StageSummary(name="prep", orchestration_steps=2),
            StageSummary(name="train", orchestration_steps=1),
        ],
    )


def _pngs(page: str) -> list[bytes]:
    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [base64.b64decode(data) for data in found]


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_write_report_writes_both_files_with_totals_and_the_tokenizer(
    run: RunSummary, tmp_path: Path
) -> None:
    paths = write_report(run, tmp_path / "out")
    assert [p.name for p in paths] == ["report.md", "report.html"]
    markdown = paths[0].read_text(encoding="utf-8")
    code = sum((t.usage for t in run.tasks), Usage())
    sequential = sum((t.classic.sequential.uncached for t in run.tasks if t.classic), Usage())
    parallel = sum((t.classic.parallel.uncached for t in run.tasks if t.classic), Usage())
    total_row = next(line for line in markdown.splitlines() if line.startswith("| **total** |"))
    for figure in (code.total_input_tokens, sequential.total_input_tokens):
        assert f"{figure:,}" in total_row
    assert f"{parallel.total_input_tokens:,}" in total_row
    ratio = sequential.total_input_tokens / code.total_input_tokens
    assert f"{ratio:.1f}x" in total_row
    headers = [line for line in markdown.splitlines() if line.startswith("| task |")]
    assert headers and not any("[" in line for line in headers)  # no jargon in the headers
    assert markdown.count(f"| estimated, counted by {TOKENIZER_NAME} |") == 3  # every figure
    assert markdown.count("| measured-live, counted by the model's API |") == 2
    assert markdown.count("| replayed, counted by the model's API |") == 1  # b: scripted
    assert "| b | passed | 2 | - | 20 | (scripted) |  |" in markdown
    assert "The mix: 3 of 3 tasks called tools (5 to 60 calls each); 0 called none." in markdown
    assert "| **Critical Steps** |  |  | 12 |" in markdown  # (2 + 5) + (1 + 4)
    assert "Steps taken by all agents: 15; on the critical path: 12." in markdown
    assert "| 36.0 s | 30.0 s | 1.20x |" in markdown  # serial, wall, speedup
    assert "Critical path (what the end time waited for, by the clock): a (10.0 s) → c" in markdown


def test_html_has_the_same_tables_and_three_embedded_pngs(run: RunSummary, tmp_path: Path) -> None:
    page = write_report(run, tmp_path)[1].read_text(encoding="utf-8")
    pngs = _pngs(page)
    assert len(pngs) == 3  # turn by turn, tokens per task, timeline
    assert pngs[0] == (tmp_path / "report-turns.png").read_bytes()  # the file md links
    for png in pngs:
        width, height = _size(png)
        assert width >= 400 and height >= 150
    assert TOKENIZER_NAME in page
    assert "<b>Critical Steps</b>" in page
    assert page.count("<table>") == 6  # no checks table: the tasks here have no checks


def test_plots_render_valid_pngs(tmp_path: Path) -> None:
    png = tokens_png(
        ["small", "large"],
        {"code": [1_000, 5_000], "classic": [20_000, 900_000]},
        title="tokens",
        ylabel="tokens",
    )
    path = tmp_path / "tokens.png"
    path.write_bytes(png)
    data = path.read_bytes()
    assert _size(data) == (700, 450)
    assert len(data) > 10_000
    timeline = timeline_png(
        [Span(label="a", start_s=0, end_s=3, critical=True), Span(label="b", start_s=1, end_s=2)],
        title="timeline",
    )
    assert _size(timeline)[0] == 800


def test_critical_path_and_steps(run: RunSummary) -> None:
    assert [t.task_id for t in critical_path(run.tasks)] == ["a", "c"]
    rows = [
        (name, orch, slowest and slowest.task_id) for name, orch, slowest in critical_steps(run)
    ]
    assert rows == [("prep", 2, "b"), ("train", 1, "c")]
    instant = _task("z", "main", 1, 5, 5, calls=0)
    assert critical_path([instant, instant.model_copy()]) == [instant]  # zero length: no loop


def test_tasks_without_an_estimate_or_a_declared_stage(tmp_path: Path) -> None:
    task = _task("solo", "extra", 2, 0, 4, calls=1).model_copy(update={"classic": None})
    markdown = write_report(RunSummary(run_id="r", tasks=[task]), tmp_path)[0].read_text()
    assert "the total covers the 0 of 1 tasks with a classic figure" in markdown
    assert "It has no classic-flow figure to compare with." in markdown
    assert "| extra | 0 | solo (2) | 2 |" in markdown
    page = (tmp_path / "report.html").read_text()
    assert len(_pngs(page)) == 1  # no token plots without estimates; the timeline remains


def test_a_task_that_ended_in_error_shows_its_kind(tmp_path: Path) -> None:
    failed = _task("f", "main", 1, 0, 2, calls=1, status=TaskStatus.ERROR, error_kind="model")
    markdown = write_report(RunSummary(run_id="r", tasks=[failed]), tmp_path)[0].read_text()
    assert "| f | error (model) |" in markdown


def test_module_entry_point_reads_a_summary_json(run: RunSummary, tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(run.model_dump_json(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "execloop.runtime.report", str(summary), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / "out" / n) for n in ("report.md", "report.html")]
    assert RunSummary.model_validate_json(summary.read_text()) == run


def test_public_names_are_sorted_and_resolve() -> None:
    from execloop.runtime import report, report_plots

    for module in (report, report_plots):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)
