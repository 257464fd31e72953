"""execloop.sandboxes: one Sandbox contract, several isolation backends."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

if __name__ != "execloop.sandboxes":  # the folder is mapped into execloop; never import it bare
    raise ImportError(
        "import execloop.sandboxes, not sandboxes: the folder is part of the execloop package"
    )

from execloop.sandboxes.base import (
    GUEST_CONTROL_DIR,
    Artifact,
    Capability,
    ExecResult,
    ExitReason,
    Manifest,
    Sandbox,
)
from execloop.sandboxes.docker_backend import DockerSandbox
from execloop.sandboxes.pool import PoolSet, SandboxPool
from execloop.sandboxes.reaper import Orphans, remove_orphans, remove_orphans_once
from execloop.sandboxes.spec import SandboxSpec, coerce_spec, parse_bytes

__all__ = [
    "Artifact",
    "BACKENDS",
    "Capability",
    "DockerSandbox",
    "ExecResult",
    "ExitReason",
    "GUEST_CONTROL_DIR",
    "Manifest",
    "Orphans",
    "PoolSet",
    "Sandbox",
    "SandboxPool",
    "SandboxSpec",
    "create_sandbox",
    "parse_bytes",
    "remove_orphans",
    "remove_orphans_once",
]


# backend name -> (module, class): a channel on a placement each (``placements/``); imported
# on demand so a backend's dependencies load only when it is used.
BACKENDS: dict[str, tuple[str, str]] = {
    "docker": ("execloop.sandboxes.docker_backend", "DockerSandbox"),
    "jupyter": ("execloop.sandboxes.jupyter_backend", "JupyterSandbox"),
    "local": ("execloop.sandboxes.local_backend", "LocalSandbox"),
    "restricted": ("execloop.sandboxes.restricted_backend", "RestrictedSandbox"),
}


def create_sandbox(spec: SandboxSpec | Mapping[str, Any] | None = None) -> Sandbox:
    """The sandbox for ``spec.backend`` (not started: use ``async with``); a dict ``spec`` is
    validated into a ``SandboxSpec`` (``ConfigError`` names each bad field)."""
    spec = coerce_spec(spec)
    module_name, class_name = BACKENDS[spec.backend]
    backend: type[Sandbox] = getattr(importlib.import_module(module_name), class_name)
    return backend(spec)
