"""Progress events: the line protocol a script writes on stdout, read back on the host.

A script reports progress by printing one JSON object on a line of its own::

    {"execloop": "progress", "step": 10, "total": 100, "loss": 1.9}

``execloop_progress.report(step, total, **metrics)`` prints exactly that; every sandbox can
import it (``ship_progress_module`` puts it in the control directory, which the placement
mounts, and ``PYTHONPATH`` names it; the restricted backend allows its import). The line
travels with the streamed output (``exec(..., on_output=...)``), so any backend that streams
carries progress, and ``ProgressReader`` is the one place it is recognised. The text comes from
the user's code, so everything is bounded here: lines longer than ``MAX_LINE_CHARS`` are plain
output, metrics are finite numbers only (at most ``MAX_METRICS``, names of at most
``MAX_NAME_CHARS``), and at most ``max_per_s`` events a second are delivered (the latest is
always delivered, at the latest when the exec ends). A line that is not a valid event is just
output: a script cannot fail because of what it printed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from execloop.errors import ConfigError
from execloop.sandboxes.streaming import OnOutput, StreamName

__all__ = [
    "GUEST_MODULE",
    "MAX_LINE_CHARS",
    "MAX_METRICS",
    "MAX_NAME_CHARS",
    "OnProgress",
    "ProgressEvent",
    "ProgressReader",
    "check_on_progress",
    "guest_environment",
    "parse_progress",
    "ship_progress_module",
    "without_progress_lines",
]

GUEST_MODULE = "execloop_progress"
MAX_LINE_CHARS = 4096
MAX_METRICS = 16
MAX_NAME_CHARS = 64
EVENTS_PER_S = 10.0
_PYTHON_DIR = "python"  # in the control directory; the tool bridge owns "lib"
# How the guest module starts its lines: only such lines are held back from a live display.
_PREFIX = '{"execloop": "progress"'


class ProgressEvent(BaseModel):
    """One progress report: ``step`` of ``total`` (None: unknown), numeric ``metrics``, and
    ``time``, when the host read it (seconds since the epoch)."""

    model_config = ConfigDict(frozen=True)

    step: int | float = Field(ge=0, allow_inf_nan=False)
    total: int | float | None = Field(default=None, gt=0, allow_inf_nan=False)
    metrics: dict[str, float] = Field(default_factory=dict)
    time: float

    @property
    def fraction(self) -> float | None:
        """How much is done, 0 to 1; None when the total is unknown."""
        return None if self.total is None else min(self.step / self.total, 1.0)

    def describe(self) -> str:
        """One short line: ``step 10/100, loss 1.9``."""
        done = f"{self.step:g}" + ("" if self.total is None else f"/{self.total:g}")
        metrics = ", ".join(f"{name} {value:.4g}" for name, value in self.metrics.items())
        return f"step {done}" + (f", {metrics}" if metrics else "")


OnProgress = Callable[[ProgressEvent], None]


def check_on_progress(on_progress: object) -> OnProgress | None:
    """``on_progress`` if it is None or callable, else ``ConfigError``."""
    if on_progress is not None and not callable(on_progress):
        raise ConfigError(f"on_progress must be callable, not {type(on_progress).__name__}")
    return on_progress


def _number(value: object) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def parse_progress(line: str, *, now: float | None = None) -> ProgressEvent | None:
    """The event a line of output holds, or None when it is not one (then it is just output)."""
    text = line.strip()
    if not text.startswith("{") or len(text) > MAX_LINE_CHARS or '"execloop"' not in text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("execloop") != "progress":
        return None
    step, total = _number(data.get("step")), _number(data.get("total"))
    if step is None or step < 0 or (total is not None and total <= 0):
        return None
    if data.get("total") is not None and total is None:
        return None
    metrics: dict[str, float] = {}
    for name, value in data.items():
        number = _number(value)
        if name in ("execloop", "step", "total") or number is None:
            continue
        if len(metrics) < MAX_METRICS and 0 < len(name) <= MAX_NAME_CHARS:
            metrics[name] = float(number)
    return ProgressEvent(
        step=step, total=total, metrics=metrics, time=time.time() if now is None else now
    )


class ProgressReader:
    """Reads progress events out of one exec's streamed output: ``feed`` is an ``on_output``
    (stdout is scanned line by line, stderr passed on), ``close`` ends the exec.

    ``on_output`` (optional) receives the output as it comes, without the lines the guest
    module wrote (a live view shows a bar instead); those are held back only while they can
    still be one, so other output is never delayed."""

    def __init__(
        self,
        on_progress: OnProgress,
        *,
        on_output: OnOutput | None = None,
        max_per_s: float = EVENTS_PER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_progress = on_progress
        self._on_output = on_output
        self._interval = 1.0 / max_per_s
        self._clock = clock
        self._line = ""  # the current stdout line, while it can still be an event
        self._overlong = False
        self._held: str | None = None  # display text held back, None: not holding
        self._last_sent: float | None = None
        self._pending: ProgressEvent | None = None
        self.events = 0  # delivered

    def feed(self, stream: StreamName, text: str) -> None:
        if stream != "stdout":
            self._show(stream, text)
            return
        for piece in text.splitlines(keepends=True):
            self._piece(piece)

    def _piece(self, piece: str) -> None:
        at_start = not self._line and not self._overlong
        if not self._overlong:
            self._line += piece
            if len(self._line) > MAX_LINE_CHARS + 2:  # + a line end
                self._overlong, self._line = True, ""
        if self._on_output is not None:
            if at_start:
                self._held = ""
            if self._held is not None:
                self._held += piece
                begun = self._held.lstrip()
                if self._overlong or not (_PREFIX.startswith(begun) or begun.startswith(_PREFIX)):
                    self._show("stdout", self._held)
                    self._held = None
            else:
                self._show("stdout", piece)
        if piece.endswith(("\n", "\r")):
            self._end_line()

    def _end_line(self) -> None:
        event = None if self._overlong else parse_progress(self._line)
        if self._held is not None:
            if event is None:
                self._show("stdout", self._held)
            self._held = None
        self._line, self._overlong = "", False
        if event is not None:
            self._deliver(event)

    def _deliver(self, event: ProgressEvent) -> None:
        now = self._clock()
        if self._last_sent is not None and now - self._last_sent < self._interval:
            self._pending = event  # thinned: only the latest waits
            return
        self._last_sent, self._pending = now, None
        self.events += 1
        self._on_progress(event)

    def _show(self, stream: StreamName, text: str) -> None:
        if self._on_output is not None and text:
            self._on_output(stream, text)

    def close(self) -> None:
        """The exec ended: a last line without its line end is read, the latest thinned
        event delivered."""
        if self._line or self._held:
            self._end_line()
        if self._pending is not None:
            event, self._pending = self._pending, None
            self.events += 1
            self._on_progress(event)


def without_progress_lines(text: str) -> str:
    """``text`` as a ``ProgressReader`` with ``on_output`` shows it: the lines the guest module
    wrote are gone (to tell what a live view showed from what an exec's result holds)."""
    kept: list[str] = []
    reader = ProgressReader(lambda event: None, on_output=lambda stream, piece: kept.append(piece))
    reader.feed("stdout", text)
    reader.close()
    return "".join(kept)


def ship_progress_module(control_dir: Path) -> str:
    """Put ``execloop_progress.py`` into ``control_dir`` (readable by the sandbox's user);
    the folder name, relative to the control directory, to put on ``PYTHONPATH``."""
    folder = control_dir / _PYTHON_DIR
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)  # the control dir may be 0o711: an import lists its folder
    target = folder / f"{GUEST_MODULE}.py"
    shutil.copyfile(Path(__file__).with_name(f"{GUEST_MODULE}.py"), target)
    target.chmod(0o644)
    return _PYTHON_DIR


def guest_environment(env: Mapping[str, str], guest_control_dir: str) -> dict[str, str]:
    """``env`` with the shipped module's folder first on ``PYTHONPATH`` (a ``PYTHONPATH`` the
    spec gives is kept after it), so the script and the processes it starts import it."""
    folder = f"{guest_control_dir}/{_PYTHON_DIR}"
    given = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": f"{folder}:{given}" if given else folder}
