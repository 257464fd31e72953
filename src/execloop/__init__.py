"""execloop: sub-agents write scripts; execloop runs them in sandboxes, checks them, and
returns one verified result. This module re-exports the public API."""

from __future__ import annotations

from execloop.errors import (
    BackendUnavailableError,
    ConfigError,
    ExecloopError,
    ImageError,
    SandboxClosedError,
    SandboxError,
    SandboxStartError,
    TransferError,
)
from execloop.runtime.run import ScriptRun, run_script, run_script_async
from execloop.sandboxes import (
    Artifact,
    DockerSandbox,
    ExecResult,
    ExitReason,
    Manifest,
    PoolSet,
    Sandbox,
    SandboxPool,
    SandboxSpec,
    create_sandbox,
)
from execloop.sandboxes.progress import ProgressEvent

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "BackendUnavailableError",
    "ConfigError",
    "DockerSandbox",
    "ExecResult",
    "ExecloopError",
    "ExitReason",
    "ImageError",
    "Manifest",
    "PoolSet",
    "ProgressEvent",
    "Sandbox",
    "SandboxClosedError",
    "SandboxError",
    "SandboxPool",
    "SandboxSpec",
    "SandboxStartError",
    "ScriptRun",
    "TransferError",
    "__version__",
    "create_sandbox",
    "run_script",
    "run_script_async",
]
