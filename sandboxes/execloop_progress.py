"""Report a script's progress to execloop: ``report(step, total, **metrics)``.

Shipped into every sandbox (importable as ``execloop_progress``; standard library only). Each
call prints one line on stdout, ``{"execloop": "progress", "step": 10, "total": 100,
"loss": 1.9}``, which the host reads back as a progress event (live bars, the broker's store,
MCP progress). Printing such a line by hand works the same. Calls closer together than
``MIN_INTERVAL_S`` print nothing, except the first and the one reaching ``total``, so a tight
training loop cannot flood the output (which counts towards the sandbox's output bound).
"""

import json as _json
import math as _math
import sys as _sys
import time as _time
from typing import Any as _Any

__all__ = ["MIN_INTERVAL_S", "report"]

MIN_INTERVAL_S = 0.5
_last: list[float | None] = [None]  # monotonic time of the last line printed


def _number(name: str, value: _Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"execloop_progress.report: {name} must be a number, not bool")
    if not isinstance(value, int | float):
        try:  # numpy scalars, one-element tensors
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"execloop_progress.report: {name} must be a number, not {type(value).__name__}"
            ) from None
    return float(value) if isinstance(value, float) else int(value)


def report(step: float, total: float | None = None, **metrics: float) -> None:
    """Say that ``step`` of ``total`` (None: unknown) is done, with numeric ``metrics``
    (e.g. ``loss=1.9``; a metric that is not finite is sent as null and dropped by the host)."""
    step = _number("step", step)
    if not _math.isfinite(step) or step < 0:
        raise ValueError(f"execloop_progress.report: step must be finite and >= 0, not {step}")
    if "execloop" in metrics:
        raise TypeError("execloop_progress.report: 'execloop' is not a metric name")
    if total is not None:
        total = _number("total", total)
    values: dict[str, float | None] = {}
    for name, value in metrics.items():
        value = _number(name, value)
        values[name] = value if _math.isfinite(value) else None
    now = _time.monotonic()
    final = total is not None and step >= total
    if not final and _last[0] is not None and now - _last[0] < MIN_INTERVAL_S:
        return
    _last[0] = now
    line = {"execloop": "progress", "step": step, "total": total, **values}
    _sys.stdout.write(_json.dumps(line, allow_nan=False) + "\n")
    _sys.stdout.flush()
