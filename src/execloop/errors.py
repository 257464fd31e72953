"""The one exception root of execloop.

Only infrastructure failures raise. A script that fails, times out, runs out of memory or
prints too much is *data* (an ``ExecResult`` with an ``exit_reason``), and a failed check is
control flow; neither is an exception.

::

    ExecloopError                   everything execloop raises derives from this
    ├── ConfigError                 bad spec, argument or input; the message says how to fix it
    │   ├── SkillError              a SKILL.md is invalid (file, field and what is expected)
    │   └── StoreError              the runs database is missing, corrupt, read-only or busy
    ├── BackendUnavailableError     the backend cannot run here (no daemon, no bwrap, no image)
    ├── BrokerBusyError             admission control refused a task (too many pending)
    ├── ImageError                  an image could not be built or found
    ├── MissingExtraError           an optional extra is not installed (also ModuleNotFoundError)
    ├── ModelError                  the model provider failed after retries, or replied garbage
    └── SandboxError                a sandbox failed as infrastructure
        ├── SandboxStartError       the sandbox did not come up (logs tail attached)
        ├── SandboxClosedError      the sandbox is closed or died on an earlier call
        ├── ProtocolError           the in-sandbox helper sent something malformed
        └── TransferError           a file transfer was refused (path traversal, missing path)

Third-party errors are mapped in one place per backend with ``raise ... from exc``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendUnavailableError",
    "BrokerBusyError",
    "ConfigError",
    "ExecloopError",
    "ImageError",
    "MissingExtraError",
    "ModelError",
    "ProtocolError",
    "SandboxClosedError",
    "SandboxError",
    "SandboxStartError",
    "SkillError",
    "StoreError",
    "TransferError",
]


class ExecloopError(Exception):
    """Root of every exception execloop raises."""


class ConfigError(ExecloopError, ValueError):
    """A spec, argument or input is invalid; the message names it and how to fix it."""


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
    """The model provider failed after retries (HTTP error, timeout) or sent a malformed reply."""


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


class ImageError(ExecloopError):
    """A sandbox image could not be built or is missing."""


class SandboxError(ExecloopError):
    """A sandbox failed as infrastructure (not the user's script failing)."""


class SandboxStartError(SandboxError):
    """The sandbox did not come up."""


class SandboxClosedError(SandboxError):
    """The sandbox was closed, or died during an earlier call (timeout, OOM, kill)."""


class ProtocolError(SandboxError):
    """The in-sandbox helper sent a malformed or oversized frame."""


class TransferError(SandboxError):
    """A file transfer was refused: path traversal, absolute path, link escape, missing path."""
