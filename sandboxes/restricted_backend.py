"""The ``restricted`` backend: RestrictedPython in a child process. NOT a security boundary.

It is meant for code the runtime trusts — check expressions, glue between steps — that should
still not wander off by mistake: imports are limited to a few stdlib modules, ``open`` to the
workspace, and names starting with ``_`` are refused (``restricted_runner`` has the details).
The code runs in a plain host process, as the host user, with the host's file system one
RestrictedPython escape away; the rlimits and the host-side kill on a deadline only bound its
resources. Untrusted code belongs in the ``docker`` or ``local`` backend.

The child is the ordinary helper with RestrictedPython plugged in, so the protocol, state,
output capture and deadlines are exactly the other backends'.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from execloop.sandboxes.process_backend import ProcessSandbox, refuse, rlimit_argv
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import SOCKET_NAME

__all__ = ["RestrictedSandbox", "check_spec", "restricted_argv"]

# What the child needs to start the same interpreter and find execloop; nothing else of the
# host's environment (API keys...) is passed on.
_PASSED_ON = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH")
_UNSUPPORTED = {
    "gpus": "use backend='docker' for GPUs",
    "image": "it runs in execloop's own interpreter; use backend='docker' for images",
    "runtime": "OCI runtimes such as runsc belong to backend='docker'",
    "placement": "placement only applies to backend='jupyter'",
    "cpus": "a host process has no CPU rate limit (only a CPU-time backstop); "
    "use backend='docker' to limit CPUs",
}


def check_spec(spec: SandboxSpec) -> None:
    """Refuse the spec fields this backend cannot honour (``ConfigError`` names the fix)."""
    refuse(spec, backend="restricted", unsupported=_UNSUPPORTED)


def restricted_argv(
    spec: SandboxSpec, *, session_id: str, socket_dir: Path, workspace: Path
) -> list[str]:
    """The child's command line: limits, then the runner speaking the helper protocol."""
    return [
        *rlimit_argv(spec),
        sys.executable,
        str(Path(__file__).with_name("restricted_runner.py")),
        str(socket_dir / SOCKET_NAME),
        "--workspace",
        str(workspace),
        "--session",
        session_id,
    ]


class RestrictedSandbox(ProcessSandbox):
    """RestrictedPython in a child process with rlimits. NOT a security boundary: for check
    expressions and trusted glue only (see the module docstring)."""

    backend_name = "restricted"

    def __init__(self, spec: SandboxSpec | None = None) -> None:
        spec = spec or SandboxSpec(backend="restricted")
        check_spec(spec)
        super().__init__(spec)
        self.workspace: Path | None = None

    async def _command(self, socket_dir: Path, state_dir: Path) -> list[str]:
        workspace = self.spec.workspace_dir
        if workspace is None:  # removed with the state directory
            workspace = state_dir / "workspace"
            workspace.mkdir()
        self.workspace = workspace
        return restricted_argv(
            self.spec, session_id=self.session_id, socket_dir=socket_dir, workspace=workspace
        )

    def _environment(self) -> dict[str, str]:
        passed = {name: os.environ[name] for name in _PASSED_ON if name in os.environ}
        return {**passed, "HOME": str(self.workspace), **self.spec.env}
