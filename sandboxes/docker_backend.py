"""The ``docker`` backend: the helper on a container placement, one hardened, long-lived
container per session (``placements/container.py`` has the request and its defaults)."""

from __future__ import annotations

from typing import Any

from execloop.sandboxes.base import Capability, check_backend
from execloop.sandboxes.placements.container import (
    ContainerPlacement,
    container_request,
    default_client,
    removed_already,
    run_as_ids,
)
from execloop.sandboxes.placements.process import refuse
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.stateful import HelperSandbox

__all__ = [
    "DockerSandbox",
    "container_request",
    "default_client",
    "removed_already",
    "run_as_ids",
]

_UNSUPPORTED = {"placement": "placement only applies to backend='jupyter'"}


class DockerSandbox(HelperSandbox):
    """A stateful Python session in a hardened container (see ``container_request``)."""

    backend_name = "docker"
    offers = frozenset(
        {Capability.STATEFUL, Capability.TOOLS, Capability.GPU, Capability.BINARY_STDOUT}
    )

    def __init__(self, spec: SandboxSpec | None = None, *, client: Any = None) -> None:
        spec = spec or SandboxSpec()
        check_backend(spec, "docker", type(self).__name__)
        refuse(spec, backend="docker", unsupported=_UNSUPPORTED)
        super().__init__(
            spec,
            placement=lambda session: ContainerPlacement(
                spec, session_id=session, label="docker", client=client
            ),
        )

    @property
    def container(self) -> Any:
        """The running container (a ``docker`` SDK object), None before start and after close."""
        assert isinstance(self.placement, ContainerPlacement)
        return self.placement.container
