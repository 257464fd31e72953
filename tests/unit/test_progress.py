"""``ProgressReader`` and ``parse_progress``: the one place progress lines are read, bounded."""

from __future__ import annotations

import itertools
import json

import pytest

from execloop.errors import ConfigError
from execloop.sandboxes.progress import (
    MAX_LINE_CHARS,
    MAX_METRICS,
    ProgressEvent,
    ProgressReader,
    check_on_progress,
    guest_environment,
    parse_progress,
)


def _line(**fields: object) -> str:
    return json.dumps({"execloop": "progress", **fields}) + "\n"


def test_a_line_becomes_an_event_with_numbers_only() -> None:
    event = parse_progress(_line(step=10, total=100, loss=1.9, tag="x", ok=True, n=None), now=5)
    assert event == ProgressEvent(step=10, total=100, metrics={"loss": 1.9}, time=5)
    assert event.describe() == "step 10/100, loss 1.9"
    assert event.fraction == pytest.approx(0.1)


@pytest.mark.parametrize(
    "line",
    [
        "loss 1.9\n",
        '{"execloop": "progress"}\n',  # no step
        '{"execloop": "progress", "step": -1}\n',
        '{"execloop": "progress", "step": 1, "total": 0}\n',
        '{"execloop": "progress", "step": 1, "total": "many"}\n',
        '{"execloop": "progress", "step": NaN}\n',
        '{"execloop": "other", "step": 1}\n',
        '["execloop", "progress"]\n',
        '{"execloop": "progress", "step": 1\n',  # cut short
    ],
)
def test_anything_else_is_just_output(line: str) -> None:
    assert parse_progress(line) is None


def test_metrics_are_bounded_and_finite() -> None:
    metrics = {f"m{i}": i for i in range(MAX_METRICS + 5)}
    event = parse_progress(_line(step=1, **metrics, bad=float("inf"), **{"x" * 65: 1}))
    assert event is not None
    assert list(event.metrics) == [f"m{i}" for i in range(MAX_METRICS)]


class _Seen:
    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []
        self.text: list[tuple[str, str]] = []

    def reader(self, **options: object) -> ProgressReader:
        return ProgressReader(
            self.events.append,
            on_output=lambda stream, text: self.text.append((stream, text)),
            **options,  # type: ignore[arg-type]
        )

    def shown(self, stream: str = "stdout") -> str:
        return "".join(t for s, t in self.text if s == stream)


def test_lines_split_across_pieces_are_read_and_other_output_is_not_delayed() -> None:
    seen = _Seen()
    reader = seen.reader()
    line = _line(step=2, total=4)
    reader.feed("stdout", "epoch 1 ")
    assert seen.shown() == "epoch 1 "  # shown at once: it can never be an event
    reader.feed("stdout", "done\n" + line[:10])
    assert seen.shown() == "epoch 1 done\n"  # the start of an event is held back
    reader.feed("stderr", "warn\n")
    reader.feed("stdout", line[10:] + "tail")
    reader.close()
    assert [e.step for e in seen.events] == [2]
    assert seen.shown() == "epoch 1 done\ntail"
    assert seen.shown("stderr") == "warn\n"


def test_an_overlong_line_is_output_and_never_held_whole() -> None:
    seen = _Seen()
    reader = seen.reader()
    start = '{"execloop": "progress", "step": 1, "pad": "'
    reader.feed("stdout", start)
    reader.feed("stdout", "x" * MAX_LINE_CHARS)
    assert seen.shown().startswith(start)  # released once it is too long to be an event
    reader.feed("stdout", '"}\n')
    reader.close()
    assert seen.events == []
    assert seen.shown() == start + "x" * MAX_LINE_CHARS + '"}\n'


def test_events_are_thinned_to_the_rate_and_the_latest_is_delivered() -> None:
    seen = _Seen()
    clock = itertools.count(step=0.01).__next__  # 100 lines a second
    reader = seen.reader(max_per_s=10, clock=clock)
    reader.feed("stdout", "".join(_line(step=step, total=100) for step in range(1, 101)))
    reader.close()
    steps = [event.step for event in seen.events]
    assert 9 <= len(steps) <= 12
    assert steps[0] == 1 and steps[-1] == 100
    assert reader.events == len(steps)


def test_a_progress_line_written_another_way_is_read_and_still_shown() -> None:
    seen = _Seen()
    reader = seen.reader()
    text = '{"step": 3, "execloop": "progress"}\n'
    reader.feed("stdout", text)
    reader.close()
    assert [e.step for e in seen.events] == [3]
    assert seen.shown() == text


def test_bad_callbacks_and_the_guest_path() -> None:
    with pytest.raises(ConfigError, match="on_progress must be callable, not int"):
        check_on_progress(3)
    assert guest_environment({}, "/run/execloop") == {"PYTHONPATH": "/run/execloop/python"}
    env = guest_environment({"PYTHONPATH": "/opt/x", "A": "1"}, "/c")
    assert env == {"PYTHONPATH": "/c/python:/opt/x", "A": "1"}
