"""Entry point ``execloop-bubblewrap-provisioner``: the kernel on a bubblewrap placement."""

from __future__ import annotations

from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.kernel_provisioners import SandboxKernelProvisioner

__all__ = ["BubblewrapKernelProvisioner"]


class BubblewrapKernelProvisioner(SandboxKernelProvisioner):
    """Runs the kernel under bwrap with the local backend's isolation."""

    placement = "bubblewrap"

    @property
    def cgroup(self) -> Cgroup | None:
        """The running kernel's own cgroup; None without one (rlimits only)."""
        return None if self._where is None else self._where.cgroup
