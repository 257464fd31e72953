"""The one exception root of execloop.

Only infrastructure failures raise. A script that fails, times out, runs out of memory or
prints too much is *data* (an ``ExecResult`` with an ``exit_reason``), and a failed check is
control flow; neither is an exception.

::

    ExecloopError                   everything execloop raises derives from this
    ├── ConfigError                 bad spec, argument or input; the message says how to fix it
    │   ├── ConfigFileError         execloop.toml is unreadable or has a bad or unknown key
    │   ├── SkillError              a SKILL.md is invalid (file, field and what is expected)
    │   └── StoreError              the runs database is missing, corrupt, read-only or busy
    ├── BackendUnavailableError     the backend cannot run here (no daemon, no bwrap, no image)
    ├── BrokerBusyError             admission control refused a task (too many pending)
    ├── BrokerStoppedError          the broker stopped before the task had its result
    ├── ImageError                  an image could not be built or found
    ├── MissingExtraError           an optional extra is not installed (also ModuleNotFoundError)
    ├── ModelError                  the model provider failed after retries, or replied garbage
    └── SandboxError                a sandbox failed as infrastructure
        ├── SandboxStartError       the sandbox did not come up (logs tail attached)
        ├── SandboxClosedError      the sandbox is closed or died on an earlier call
        ├── SandboxGoneError        the container or process no longer exists
        ├── ProtocolError           the in-sandbox helper sent something malformed
        └── TransferError           a file transfer was refused (path traversal, missing path)

Errors carry fields (``sandbox_id``, ``status_code``, ``task_id``, ``ended`` ...), so callers
branch on data, never on message text. Third-party errors are mapped in one place per backend
with ``raise ... from exc``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendUnavailableError",
    "BrokerBusyError",
    "BrokerStoppedError",
    "ConfigError",
    "ConfigFileError",
    "ExecloopError",
    "ImageError",
    "MissingExtraError",
    "ModelError",
    "ProtocolError",
    "SandboxClosedError",
    "SandboxError",
    "SandboxGoneError",
    "SandboxStartError",
    "SkillError",
    "StoreError",
    "TransferError",
]


class ExecloopError(Exception):
    """Root of every exception execloop raises."""


class ConfigError(ExecloopError, ValueError):
    """A spec, argument or input is invalid; the message names it and how to fix it."""


class ConfigFileError(ConfigError):
    """``execloop.toml`` cannot be used: ``path`` is the file and ``key`` the dotted key at
    fault (``sandbox.memroy``), None when the file as a whole is unreadable or not TOML."""

    def __init__(self, message: str, *, path: Path, key: str | None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class SkillError(ConfigError):
    """A skill's SKILL.md is invalid; the message names the file, the field and the fix."""


class StoreError(ConfigError):
    """The runs database cannot be used as asked. ``path`` is the database file and ``reason``
    one of ``missing``, ``not_a_file``, ``corrupt``, ``foreign``, ``newer``, ``read_only``,
    ``busy``, ``unusable``, so callers branch on data."""

    def __init__(self, message: str, *, path: Path, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class ModelError(ExecloopError):
    """The model provider failed after retries (HTTP error, timeout) or sent a malformed reply.
    ``status_code`` is the provider's HTTP status when it answered with an error, else None."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BackendUnavailableError(ExecloopError):
    """The requested backend cannot run on this machine (``execloop doctor`` explains why)."""


class MissingExtraError(ExecloopError, ModuleNotFoundError):
    """A feature needs packages of an optional extra; ``extra`` is its name (install it with
    ``pip install 'execloop[EXTRA]'``) and ``name`` the module that is missing."""

    def __init__(self, message: str, *, extra: str, name: str) -> None:
        super().__init__(message, name=name)
        self.extra = extra


class BrokerBusyError(ExecloopError):
    """The broker already holds ``max_pending`` unfinished tasks; retry after some finish."""

    def __init__(self, message: str, *, pending: int, max_pending: int) -> None:
        super().__init__(message)
        self.pending = pending
        self.max_pending = max_pending


class BrokerStoppedError(ExecloopError):
    """The broker stopped before task ``task_id`` had its result (a broker started on the same
    database resumes it)."""

    def __init__(self, message: str, *, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class ImageError(ExecloopError):
    """A sandbox image could not be built or is missing."""


class SandboxError(ExecloopError):
    """A sandbox failed as infrastructure (not the user's script failing). ``sandbox_id`` is
    the session's id when known; ``status_code`` the backend's HTTP status (Docker's API) when
    it refused a request, else None."""

    def __init__(
        self, message: str, *, sandbox_id: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id
        self.status_code = status_code


class SandboxStartError(SandboxError):
    """The sandbox did not come up."""


class SandboxClosedError(SandboxError):
    """The sandbox was closed, or died during an earlier call (timeout, OOM, kill). ``ended``
    says why it can run no more code when it was not closed by its owner, else None."""

    def __init__(
        self,
        message: str,
        *,
        sandbox_id: str | None = None,
        status_code: int | None = None,
        ended: str | None = None,
    ) -> None:
        super().__init__(message, sandbox_id=sandbox_id, status_code=status_code)
        self.ended = ended


class SandboxGoneError(SandboxError):
    """The sandbox's container or process no longer exists (removed, or never created)."""


class ProtocolError(SandboxError):
    """The in-sandbox helper sent a malformed or oversized frame."""


class TransferError(SandboxError):
    """A file transfer was refused: path traversal, absolute path, link escape, missing path.
    ``path`` is the workspace path concerned when one is known."""

    def __init__(
        self,
        message: str,
        *,
        sandbox_id: str | None = None,
        status_code: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, sandbox_id=sandbox_id, status_code=status_code)
        self.path = path
