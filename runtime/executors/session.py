"""What every framework executor shares: one lazily started sandbox, replaced when it ends,
and ``ExecResult`` rendered faithfully as text and an exit code for a framework's model.

A failing script is data here as everywhere: the executors turn it into the framework's own
notion of a failed run (an exit code, an error observation), never into an exception. Only an
infrastructure failure (the sandbox cannot start) raises.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import anyio

from execloop.errors import ConfigError, MissingExtraError
from execloop.runtime import bounds
from execloop.sandboxes import ExecResult, ExitReason, Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.spec import coerce_spec

__all__ = [
    "MIN_OUTPUT_CHARS",
    "OUTPUT_CHARS",
    "SandboxSession",
    "check_output_chars",
    "exit_code",
    "missing_extra",
    "render",
]

log = logging.getLogger(__name__)

OUTPUT_CHARS = 20_000  # text of one exec handed to a framework's model (head + tail)
MIN_OUTPUT_CHARS = 200  # room for the status line, the cut marker and some output

# The shell's statuses, as `execloop run` exits: a framework that wants an int gets these
# when the process never reported one (the host ended it).
_STATUS_WITHOUT_CODE = {ExitReason.TIMEOUT: 124, ExitReason.OOM: 137, ExitReason.KILLED: 137}


def missing_extra(exc: ModuleNotFoundError, *, extra: str) -> MissingExtraError:
    """The error to raise (``from exc``) when a framework's import failed: it names the
    extra that installs it."""
    module = exc.name or "a framework package"
    return MissingExtraError(
        f"this executor needs {module}, which is not installed: pip install 'execloop[{extra}]'",
        extra=extra,
        name=module,
    )


def check_output_chars(value: object) -> int:
    """``value`` if it is a usable bound on a model's text, else ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_OUTPUT_CHARS:
        raise ConfigError(
            f"max_output_chars must be an integer of at least {MIN_OUTPUT_CHARS}, not {value!r}"
        )
    return value


def exit_code(result: ExecResult) -> int:
    """An int exit status for ``result``: its own code, else 124 for a timeout, 137 for oom
    or killed and 1 otherwise; 0 only when it succeeded."""
    if result.ok:
        return 0
    if result.exit_code is not None and result.exit_code != 0:
        return result.exit_code
    return _STATUS_WITHOUT_CODE.get(result.exit_reason, 1)


def render(result: ExecResult, *, limit: int = OUTPUT_CHARS, note: str = "") -> str:
    """The text a model sees: stdout (and any stderr) when the exec succeeded; otherwise a
    first line with the exit reason and status, then stdout and stderr. Bounded to ``limit``
    characters (head and tail, the cut marked; the sandbox marks what it dropped itself)."""
    parts = [note] if note else []
    if result.ok:
        parts.append(result.stdout)
        if result.stderr:  # warnings: shown after the output, as a terminal would
            parts.append(result.stderr)
    else:
        parts.append(f"[execloop: {result.exit_reason.value}, exit status {exit_code(result)}]")
        if result.stdout:
            parts.append(result.stdout.rstrip("\n"))
        if result.stderr:
            parts.append(result.stderr.rstrip("\n"))
    return bounds.middle("\n".join(parts), limit)


class SandboxSession:
    """One sandbox for a conversation: started on first use, kept between execs (state
    persists), and replaced by a fresh one when it ended (a timeout, memory, a kill); the
    next exec's ``note`` then says that earlier state is gone. ``on_start`` runs on each new
    sandbox before anything else (a framework re-defines its tools there); if it raises, that
    sandbox is closed. ``async with`` or ``aclose()`` closes it."""

    def __init__(
        self,
        *,
        spec: SandboxSpec | Mapping[str, Any] | None = None,
        on_start: Callable[[Sandbox], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = coerce_spec(spec)
        self.on_start = on_start
        self.sandbox: Sandbox | None = None
        self._lock = anyio.Lock()
        self._lost: str | None = None  # why the previous sandbox ended, until reported
        self.starts = 0

    async def exec(self, code: str, *, timeout: float | None = None) -> tuple[ExecResult, str]:
        """Run ``code``; the result and a note for the model ("" or why state was lost)."""
        if not isinstance(code, str):
            raise ConfigError(f"code must be a str, not {type(code).__name__}")
        async with self._lock:
            sandbox = await self._ready()
            note = ""
            if self._lost is not None:
                note = f"[execloop: new sandbox, earlier state is gone: {self._lost}]"
                self._lost = None
            return await sandbox.exec(code, timeout=timeout), note

    async def _ready(self) -> Sandbox:
        if self.sandbox is not None and self.sandbox.ended is None:
            return self.sandbox
        if self.sandbox is not None:  # it ended (timeout, memory, kill, cancelled mid-exec)
            self._lost = self.sandbox.ended
            await self.sandbox.close()
            self.sandbox = None
        sandbox = create_sandbox(self.spec)
        await sandbox.__aenter__()  # closes what it started if the start fails
        try:
            if self.on_start is not None:
                await self.on_start(sandbox)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await sandbox.close()
            raise
        self.sandbox = sandbox
        self.starts += 1
        return sandbox

    async def start(self) -> None:
        """Start the sandbox now instead of on first exec."""
        async with self._lock:
            await self._ready()

    async def aclose(self) -> None:
        """Close the sandbox (idempotent); a later exec starts a new one."""
        async with self._lock:
            sandbox, self.sandbox, self._lost = self.sandbox, None, None
            if sandbox is not None:
                with anyio.CancelScope(shield=True):
                    await sandbox.close()

    @property
    def started(self) -> bool:
        return self.sandbox is not None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
