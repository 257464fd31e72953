"""Live output of an exec: ``on_output(stream, text)`` as the script prints, bounded.

Every backend feeds raw bytes here as they arrive (helper frames, a kernel's iopub ``stream``
messages); this one place decodes them (a UTF-8 character split across two pieces stays
whole) and bounds them: at most ``limit`` bytes per stream are delivered, then delivery simply
stops (the ``ExecResult`` still says what was cut). The bytes come from the user's code, so the
bound is kept here on the host whatever the sandbox sends.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Literal

from execloop.errors import ConfigError

__all__ = ["OnOutput", "OutputStream", "StreamName", "check_on_output"]

StreamName = Literal["stdout", "stderr"]
OnOutput = Callable[[StreamName, str], None]
_NAMES: tuple[StreamName, ...] = ("stdout", "stderr")


def check_on_output(on_output: object) -> OnOutput | None:
    """``on_output`` if it is None or callable, else ``ConfigError`` (checked before the exec)."""
    if on_output is not None and not callable(on_output):
        raise ConfigError(f"on_output must be callable, not {type(on_output).__name__}")
    return on_output


class OutputStream:
    """Delivers one exec's output to ``on_output``: decoded, at most ``limit`` bytes a stream."""

    def __init__(self, on_output: OnOutput, *, limit: int) -> None:
        self._on_output = on_output
        self._left = {"stdout": limit, "stderr": limit}
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in _NAMES
        }

    def feed(self, stream: StreamName, data: bytes) -> None:
        left = self._left[stream]
        if left <= 0 or not data:
            return
        piece = data[:left]
        self._left[stream] = left - len(piece)
        final = self._left[stream] == 0  # no more will come: a cut character is shown as such
        text = self._decoders[stream].decode(piece, final)
        if text:
            self._on_output(stream, text)

    def close(self) -> None:
        """The exec ended: deliver what a decoder still holds (an incomplete character)."""
        for name in _NAMES:
            if self._left[name] > 0:
                text = self._decoders[name].decode(b"", True)
                if text:
                    self._on_output(name, text)
