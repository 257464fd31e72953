"""The CLI's view of a script's progress: a live rich bar on a terminal, plain lines elsewhere.

``execloop run`` starts and stops the bar itself (``start``/``stop``); ``execloop task`` puts
the view in its own live display (it is a rich renderable) and calls ``update`` as progress
events arrive. Off a terminal (CI logs, pipes) each update becomes at most one line every
``plain_every_s`` seconds, and the last one is always printed by ``stop``.
"""

from __future__ import annotations

import time

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from execloop.runtime.terminal import printable
from execloop.sandboxes.progress import ProgressEvent

__all__ = ["ProgressView"]


class ProgressView:
    """Shows the latest progress event of the script that runs now (``label`` names it)."""

    def __init__(self, console: Console, *, plain_every_s: float = 2.0) -> None:
        self.console = console
        self.live = console.is_terminal
        self.plain_every_s = plain_every_s
        self.bar = Progress(
            TextColumn("{task.description}", markup=False),  # names come from the script
            BarColumn(),
            TextColumn("{task.fields[steps]}", markup=False),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}", markup=False),
            console=console,
        )
        self._task: TaskID | None = None
        self._label = ""
        self._started = False
        self._first: tuple[float, float] | None = None  # (monotonic time, step) of the label
        self._latest: ProgressEvent | None = None
        self._printed: ProgressEvent | None = None
        self._printed_at = 0.0
        self.updates = 0

    def update(self, event: ProgressEvent, label: str = "progress") -> None:
        """Show ``event``; a new ``label`` (the next attempt) starts the bar again."""
        self.updates += 1
        now = time.monotonic()
        if label != self._label or self._first is None:
            self._label, self._first = label, (now, float(event.step))
            if self._task is not None:
                self.bar.remove_task(self._task)
                self._task = None
        self._latest = event
        steps = f"{event.step:g}" + ("" if event.total is None else f"/{event.total:g}")
        metrics = printable(", ".join(f"{k} {v:.4g}" for k, v in event.metrics.items()))
        if self._task is None:
            self._task = self.bar.add_task(
                printable(label), total=event.total, steps="", metrics=""
            )
        self.bar.update(
            self._task,
            completed=event.step,
            total=event.total,
            steps=steps,
            metrics=metrics,
        )
        if not self.live and now - self._printed_at >= self.plain_every_s:
            self._print_plain(event, now)

    def _eta(self, event: ProgressEvent, now: float) -> str:
        if self._first is None or event.total is None or event.step >= event.total:
            return ""
        began, first_step = self._first
        rate = (event.step - first_step) / max(now - began, 1e-9)
        if rate <= 0:
            return ""
        return f", eta {max(event.total - event.step, 0) / rate:.0f} s"

    def _print_plain(self, event: ProgressEvent, now: float) -> None:
        percent = "" if event.fraction is None else f" ({event.fraction:.0%})"
        line = f"{self._label}: {event.describe()}{percent}{self._eta(event, now)}"
        self.console.print(Text(printable(line)), highlight=False, soft_wrap=True)
        self._printed, self._printed_at = event, now

    def start(self) -> None:
        """Show the bar in a live display of its own (on a terminal; elsewhere nothing)."""
        if self.live and not self._started:
            self._started = True
            self.bar.start()

    def stop(self) -> None:
        """End the live bar, or print the last update that no plain line showed yet."""
        if self._started:
            self._started = False
            self.bar.stop()
        elif not self.live and self._latest is not None and self._latest is not self._printed:
            self._print_plain(self._latest, time.monotonic())

    def __rich__(self) -> RenderableType:
        return self.bar.get_renderable() if self._task is not None else Text("")
