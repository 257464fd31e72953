"""Progress events on every backend: ``execloop_progress`` imports in each sandbox, and its
lines (and one written by hand) come back through ``ProgressReader`` from the streamed output,
hidden from the output a live view shows."""

from __future__ import annotations

import itertools

import pytest

from execloop.sandboxes import ExitReason
from execloop.sandboxes.progress import ProgressEvent, ProgressReader

from .backends import BACKEND_SPECS, make_sandbox

pytestmark = pytest.mark.anyio

_SCRIPT = """
import execloop_progress
for step in range(1, 4):
    execloop_progress.report(step, 3, loss=1.0 / step)
print('{"execloop": "progress", "step": 5, "note": "not a number"}')
print('{"execloop": "progress", "step": "five"}')
print("after")
"""


@pytest.mark.parametrize("backend", list(BACKEND_SPECS))
async def test_the_shipped_module_reports_progress(backend: str) -> None:
    events: list[ProgressEvent] = []
    shown: list[tuple[str, str]] = []
    ticks = itertools.count()  # a second between reads: nothing is thinned here
    reader = ProgressReader(
        events.append,
        on_output=lambda s, t: shown.append((s, t)),
        max_per_s=1,
        clock=ticks.__next__,
    )
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(_SCRIPT, timeout=60, on_output=reader.feed)
    reader.close()
    assert result.exit_reason is ExitReason.OK, result.stderr
    # the module prints the first report and the one reaching the total (the 2nd is too soon)
    assert [(e.step, e.total, e.metrics) for e in events] == [
        (1, 3, {"loss": 1.0}),
        (3, 3, {"loss": pytest.approx(1 / 3)}),
        (5, None, {}),  # written by hand; the text "metric" is dropped
    ]
    # the result keeps every line; the live view misses only the events
    assert result.stdout.count('"execloop": "progress"') == 4
    assert "".join(t for s, t in shown if s == "stdout") == (
        '{"execloop": "progress", "step": "five"}\nafter\n'
    )
