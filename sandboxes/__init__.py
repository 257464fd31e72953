"""execloop.sandboxes: one Sandbox contract, several isolation backends."""

from __future__ import annotations

if __name__ != "execloop.sandboxes":  # the folder is mapped into execloop; never import it bare
    raise ImportError(
        "import execloop.sandboxes, not sandboxes: the folder is part of the execloop package"
    )

from execloop.sandboxes.base import Artifact, ExecResult, ExitReason, Sandbox
from execloop.sandboxes.docker_backend import DockerSandbox
from execloop.sandboxes.spec import SandboxSpec, parse_bytes

__all__ = [
    "Artifact",
    "DockerSandbox",
    "ExecResult",
    "ExitReason",
    "Sandbox",
    "SandboxSpec",
    "create_sandbox",
    "parse_bytes",
]


def create_sandbox(spec: SandboxSpec | None = None) -> Sandbox:
    """The sandbox for ``spec.backend`` (not started: use ``async with``)."""
    spec = spec or SandboxSpec()
    if spec.backend == "docker":
        return DockerSandbox(spec)
    raise AssertionError(f"unhandled backend {spec.backend!r}")  # the spec's Literal forbids it
