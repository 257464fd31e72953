"""`execloop bench sandboxes` without Docker: what is reported of a contender that cannot run,
the report's shape, and the refusals of the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from execloop.runtime.benchmarks.contenders import Contender
from execloop.runtime.benchmarks.context import BenchContext, ContenderSession
from execloop.runtime.benchmarks.sandboxes import Settings, measure_all
from execloop.runtime.benchmarks.sandboxes_report import COLUMNS, markdown, rows


async def _in_process(ctx: BenchContext) -> ContenderSession:
    namespace: dict[str, object] = {}

    async def run(code: str) -> str:
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
        return out.getvalue()

    async def close() -> None:
        return None

    return ContenderSession(run, close)


async def _broken(ctx: BenchContext) -> ContenderSession:
    raise OSError("no such thing\nhere")


CONTENDERS = [
    Contender("fine", "in process", "reference", "none", _in_process),
    Contender("absent", "absent peer", "peer", "container", _in_process, ("no_such_module_x",)),
    Contender("broken", "broken peer", "peer", "container", _broken),
]


def test_every_contender_has_numbers_or_a_reason() -> None:
    steps: list[str] = []
    ctx = BenchContext(client=None, image="unused", run_id="t")
    settings = Settings(rounds=2, warmup_rounds=1, execs=3, throughput_rounds=1, throughput_execs=2)
    records = anyio.run(measure_all, ctx, CONTENDERS, settings, steps.append)
    assert len(steps) == 3 * (2 + 1 + 1)  # every step reported to the progress bar
    fine, absent, broken = (record.as_json() for record in records)
    assert fine["status"] == "ok" and fine["keeps_state"] is True
    assert fine["exec_ms"]["n"] == 2 * 3 and fine["cold_start_ms"]["n"] == 2  # warm-up dropped
    assert fine["idle_memory_mib"] is None and fine["two_session_execs_per_s"] > 0
    assert absent == {**absent, "status": "unavailable"}
    assert "not installed" in absent["reason"] and "execloop[bench]" in absent["reason"]
    assert broken["reason"] == "failed: OSError: no such thing here"  # one line
    result = {
        "date": "today",
        "image": "img",
        "machine": {"cores": 2, "docker_version": "x"},
        "settings": settings.__dict__,
        "contenders": [fine, absent, broken],
    }
    table = rows(result)
    assert all(len(row) == len(COLUMNS) for row in table)
    assert table[1][2].startswith("unavailable: not installed")
    text = markdown(result)
    assert "| in process | none | yes |" in text and "in-process" in text


def _execloop(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "execloop.runtime.cli", "bench", "sandboxes", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--only", "nobody"], "--only: unknown nobody; choose from execloop-docker"),
        (["--rounds", "0"], "--rounds"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], says: str) -> None:
    done = _execloop(*args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr
    assert says in lines[0]


def test_an_existing_output_file_is_never_overwritten(tmp_path: Path) -> None:
    kept = tmp_path / "table.md"
    kept.write_text("keep me")
    done = _execloop("--md", str(kept))
    assert done.returncode == 2 and "exists; give a new path" in done.stderr
    assert kept.read_text() == "keep me"
