"""The ``restricted`` backend: RestrictedPython in a child process. NOT a security boundary.

It is meant for code the runtime trusts — check expressions, glue between steps — that should
still not wander off by mistake: imports are limited to a few stdlib modules, ``open`` to the
workspace, and names starting with ``_`` are refused (``restricted_runner`` has the details).
The code runs in a plain host process, as the host user, with the host's file system one
RestrictedPython escape away; the rlimits and the host-side kill on a deadline only bound its
resources. Untrusted code belongs in the ``docker`` or ``local`` backend.

The child is the ordinary helper with RestrictedPython plugged in, on a process placement, so
the protocol, state, output capture and deadlines are exactly the other backends'.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from execloop.sandboxes.base import check_backend
from execloop.sandboxes.placements.process import ProcessPlacement, ProcessView, refuse
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import SOCKET_NAME, HelperSandbox

__all__ = ["RestrictedSandbox", "check_spec", "restricted_argv"]

# What the child needs to start the same interpreter and find execloop; nothing else of the
# host's environment (API keys...) is passed on.
_PASSED_ON = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH")
_UNSUPPORTED = {
    "gpus": "use backend='docker' for GPUs",
    "image": "it runs in execloop's own interpreter; use backend='docker' for images",
    "runtime": "OCI runtimes such as runsc belong to backend='docker'",
    "placement": "placement only applies to backend='jupyter'",
    "labels": "labels are put on containers: use backend='docker' or 'jupyter'",
    "checkpoint_dir": "it has no mounts; use backend='docker' or 'local' for checkpoints",
    "checkpoint_size": "it has no mounts; use backend='docker' or 'local' for checkpoints",
    "cpus": "a host process has no CPU rate limit (only a CPU-time backstop); "
    "use backend='docker' to limit CPUs",
}


def check_spec(spec: SandboxSpec) -> None:
    """Refuse the spec fields this backend cannot honour (``ConfigError`` names the fix)."""
    refuse(spec, backend="restricted", unsupported=_UNSUPPORTED)


def restricted_argv(
    spec: SandboxSpec, *, session_id: str, socket_dir: Path, workspace: Path
) -> list[str]:
    """The child's command (the placement puts its rlimits first): the runner speaking the
    helper protocol."""
    return [
        sys.executable,
        str(Path(__file__).with_name("restricted_runner.py")),
        str(socket_dir / SOCKET_NAME),
        "--workspace",
        str(workspace),
        "--session",
        session_id,
    ]


class RestrictedSandbox(ProcessView, HelperSandbox):
    """RestrictedPython in a child process with rlimits. NOT a security boundary: for check
    expressions and trusted glue only (see the module docstring)."""

    backend_name = "restricted"

    def __init__(self, spec: SandboxSpec | None = None) -> None:
        spec = spec or SandboxSpec(backend="restricted")
        check_backend(spec, "restricted", type(self).__name__)
        check_spec(spec)
        super().__init__(spec, placement=lambda session: ProcessPlacement(spec, session_id=session))
        self.workspace: Path | None = None

    def _command(self, socket_dir: Path) -> list[str]:
        self.workspace = Path(self.placement.guest_workspace(self.spec.workspace_dir))
        return restricted_argv(
            self.spec, session_id=self.session_id, socket_dir=socket_dir, workspace=self.workspace
        )

    def _environment(self) -> dict[str, str]:
        passed = {name: os.environ[name] for name in _PASSED_ON if name in os.environ}
        return {**passed, "HOME": str(self.workspace), **self.spec.env}
