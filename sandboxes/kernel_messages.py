"""What one execution's iopub messages add up to: bounded output, the error, rich outputs.

Pure logic (no kernel, no I/O), fed one Jupyter message at a time by ``JupyterSandbox``.
stdout/stderr are kept as head + tail (``helper._Bounded``, the docker backend's buffer); every
byte a cell outputs, rich outputs included, counts towards the hard output limit.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.helper import _Bounded, python_exit_status
from execloop.sandboxes.streaming import OutputStream, StreamName

__all__ = [
    "EXIT_MIME",
    "HEALTH_MIME",
    "OutputCollector",
    "RICH_SUFFIXES",
    "Trouble",
    "strip_ansi",
    "system_exit_status",
]

# The display message execloop's os._exit hook sends before the kernel exits: {"status": n}.
EXIT_MIME = "application/vnd.execloop.exit+json"
# The one the kernel sends after a cell that left it unable to go on (``kernel_code``):
# {"reason": "oom" or "error", "why": text}.
HEALTH_MIME = "application/vnd.execloop.health+json"
_WHY_CHARS = 300

Trouble = tuple[ExitReason, str]

# Rich mime types saved as workspace files, in order of preference for the suffix.
RICH_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/svg+xml": ".svg",
    "text/html": ".html",
}
_BINARY = {"image/png", "image/jpeg"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def system_exit_status(evalue: str) -> tuple[int, str]:
    """``(exit status, message for stderr)`` of a ``SystemExit`` as ipykernel reports it (only
    ``str(exc)`` survives): no code is 0, an integer (or bool) is what the OS keeps of it,
    anything else is printed and gives 1 (``helper.python_exit_status``)."""
    text = evalue.strip()
    if text in ("", "None"):
        return 0, ""
    if re.fullmatch(r"[+-]?\d+", text):
        return python_exit_status(int(text))
    if text in ("True", "False"):
        return python_exit_status(text == "True")
    return python_exit_status(evalue.rstrip("\n"))


class OutputCollector:
    """Accumulates the iopub messages whose parent is one execute request."""

    def __init__(self, *, keep: int, limit: int) -> None:
        self.stdout = _Bounded(keep)
        self.stderr = _Bounded(keep)
        self.limit = limit
        self.total = 0
        self.idle = False
        self.frozen = False  # after an interrupt: only wait for idle, keep nothing more
        self.error: tuple[str, str, str] | None = None  # ename, evalue, traceback text
        self.exit_status: int | None = None  # what the script passed to os._exit
        self.trouble: Trouble | None = None  # the kernel cannot go on after this cell
        self.live: OutputStream | None = None  # a streaming exec's on_output, bounded

    @property
    def over_limit(self) -> bool:
        return self.total > self.limit

    def _count(self, size: int) -> bool:
        self.total += size
        return not self.frozen

    def add(self, msg: Mapping[str, Any]) -> list[tuple[str, bytes]]:
        """Take one message; returns the rich outputs to save, as ``(suffix, bytes)``."""
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content", {})
        if kind == "status":
            self.idle = self.idle or content.get("execution_state") == "idle"
        elif kind == "stream":
            data = str(content.get("text", "")).encode()
            if self._count(len(data)):
                name: StreamName = "stderr" if content.get("name") == "stderr" else "stdout"
                (self.stderr if name == "stderr" else self.stdout).add(data)
                if self.live is not None:
                    self.live.feed(name, data)
        elif kind == "error" and not self.frozen:
            lines = [str(line) for line in content.get("traceback", [])]
            traceback = strip_ansi("".join(x if x.endswith("\n") else x + "\n" for x in lines))
            self.error = (str(content.get("ename", "")), str(content.get("evalue", "")), traceback)
        elif kind in ("display_data", "execute_result"):
            data = content.get("data", {})
            if kind == "display_data" and isinstance(data, Mapping) and self._own(data):
                return []
            return self._rich(kind, data)
        return []

    def _own(self, data: Mapping[str, Any]) -> bool:
        """Take execloop's own display messages (the exit status, the kernel's trouble);
        whether ``data`` was one. Frozen or not: they come after an interrupt too."""
        exit_payload, health = data.get(EXIT_MIME), data.get(HEALTH_MIME)
        if isinstance(exit_payload, Mapping):
            status = exit_payload.get("status")
            if isinstance(status, int) and not isinstance(status, bool):
                self.exit_status = status
                return True
        if isinstance(health, Mapping):
            reason = ExitReason.OOM if health.get("reason") == "oom" else ExitReason.ERROR
            why = "".join(c if c.isprintable() else "?" for c in str(health.get("why", "")))
            self.trouble = reason, why[:_WHY_CHARS] or "the kernel cannot go on"
            return True
        return False

    def _rich(self, kind: str, data: Mapping[str, Any]) -> list[tuple[str, bytes]]:
        saved: list[tuple[str, bytes]] = []
        for mime, suffix in RICH_SUFFIXES.items():
            if mime in data:
                payload = self._decode(mime, data[mime])
                if payload is not None and self._count(len(payload)):
                    saved.append((suffix, payload))
        plain = data.get("text/plain")
        # a result's repr is what a REPL prints; a display's only if nothing richer came
        if plain is not None and (kind == "execute_result" or not saved):
            text = (str(plain) + "\n").encode()
            if self._count(len(text)):
                self.stdout.add(text)
        return saved

    @staticmethod
    def _decode(mime: str, value: Any) -> bytes | None:
        text = "".join(value) if isinstance(value, list) else str(value)
        if mime not in _BINARY:
            return text.encode()
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError):
            return None

    def outcome(self) -> tuple[int, ExitReason, str]:
        """``(exit code, reason, text to append to stderr)`` of an execution that finished."""
        if self.error is None:
            return 0, ExitReason.OK, ""
        ename, evalue, traceback = self.error
        if ename == "SystemExit":
            code, message = system_exit_status(evalue)
            return code, ExitReason.OK if code == 0 else ExitReason.ERROR, message
        reason = ExitReason.OOM if ename == "MemoryError" else ExitReason.ERROR
        return 1, reason, traceback if traceback.endswith("\n") else traceback + "\n"
