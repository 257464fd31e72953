"""Entry point ``execloop-docker-provisioner``: the kernel on a container placement."""

from __future__ import annotations

from typing import Any

from execloop.sandboxes.kernel_provisioners import SandboxKernelProvisioner
from execloop.sandboxes.placements.container import ContainerPlacement

__all__ = ["ContainerKernelProvisioner"]


class ContainerKernelProvisioner(SandboxKernelProvisioner):
    """Runs the kernel in a hardened, network-less container labelled with its session."""

    placement = "docker"

    @property
    def _container(self) -> Any:
        """The running container (a ``docker`` SDK object), for inspection."""
        where = self._where
        return where.container if isinstance(where, ContainerPlacement) else None
