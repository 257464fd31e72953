"""The ``local`` backend: the helper on a bubblewrap placement — the host's own Python in a
bubblewrap sandbox, no daemon needed (``placements/bubblewrap.py`` has the isolation)."""

from __future__ import annotations

from execloop.sandboxes.base import Capability, check_backend
from execloop.sandboxes.cgroup_host import detect_cgroups
from execloop.sandboxes.placements.bubblewrap import BubblewrapPlacement
from execloop.sandboxes.placements.process import ProcessView, refuse
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import HelperSandbox

__all__ = ["LocalSandbox", "check_spec"]

_UNSUPPORTED = {
    "gpus": "GPUs are only passed through by backend='docker'",
    "image": "it runs the host's own Python, not an image; use backend='docker' for images",
    "runtime": "OCI runtimes such as runsc belong to backend='docker'",
    "placement": "placement only applies to backend='jupyter'",
    "labels": "labels are put on containers: use backend='docker' or 'jupyter'",
}


def check_spec(spec: SandboxSpec) -> None:
    """Refuse the spec fields this backend cannot honour here (``ConfigError`` names the fix):
    ``cpus`` needs a cpu cgroup."""
    refusals = detect_cgroups().refusals(instead="use backend='docker' to limit CPUs")
    refuse(spec, backend="local", unsupported={**_UNSUPPORTED, **refusals})


class LocalSandbox(ProcessView, HelperSandbox):
    """A stateful Python session in a bubblewrap sandbox (``placements/bubblewrap.py``)."""

    backend_name = "local"
    offers = frozenset({Capability.STATEFUL, Capability.TOOLS, Capability.BINARY_STDOUT})

    def __init__(self, spec: SandboxSpec | None = None) -> None:
        spec = spec or SandboxSpec(backend="local")
        check_backend(spec, "local", type(self).__name__)
        check_spec(spec)
        super().__init__(
            spec, placement=lambda session: BubblewrapPlacement(spec, session_id=session)
        )
