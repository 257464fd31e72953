"""Back-pressure for many sub-agents on one machine: at most ``max_starting`` sandboxes start at
once (a start takes the CPUs for a moment; a hundred at once starve every running task) and at
most ``max_live`` exist at once (each holds host memory). A sandbox over either bound waits
for a slot instead of overloading the host.

    gate = SandboxGate(create_sandbox, max_live=32, max_starting=4)
    async with gate(spec) as sandbox:   # waits for a live slot, then for a start slot
        ...
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

from execloop.errors import ConfigError
from execloop.sandboxes.base import Sandbox
from execloop.sandboxes.delegate import DelegatingSandbox
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["GatedSandbox", "SandboxGate"]


class SandboxGate:
    """A sandbox factory bounding live sandboxes and concurrent starts (``None``: no bound)."""

    def __init__(
        self,
        factory: Callable[[SandboxSpec], Sandbox],
        *,
        max_live: int | None = None,
        max_starting: int | None = 4,
    ) -> None:
        for name, value in (("max_live", max_live), ("max_starting", max_starting)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 or None, not {value!r}")
        self.factory = factory
        self.max_live = max_live
        self.max_starting = max_starting
        self.live = anyio.CapacityLimiter(math.inf if max_live is None else max_live)
        self.starting = anyio.CapacityLimiter(math.inf if max_starting is None else max_starting)

    def __call__(self, spec: SandboxSpec) -> Sandbox:
        return GatedSandbox(self, spec)


class GatedSandbox(DelegatingSandbox):
    """A sandbox of ``gate.factory`` that holds one live slot from start to close."""

    def __init__(self, gate: SandboxGate, spec: SandboxSpec) -> None:
        super().__init__(spec)
        self._gate = gate
        self._holds_slot = False

    async def start(self) -> None:
        gate = self._gate
        await gate.live.acquire_on_behalf_of(self)
        self._holds_slot = True
        async with gate.starting:
            self._inner = gate.factory(self.spec)
            await self._inner.start()  # a failed start: __aenter__ closes, which frees the slot
        self.session_id = self._inner.session_id

    async def close(self) -> None:
        self._closed = True
        inner, self._inner = self._inner, None
        try:
            if inner is not None:
                with anyio.CancelScope(shield=True):
                    await inner.close()
        finally:
            if self._holds_slot:
                self._holds_slot = False
                self._gate.live.release_on_behalf_of(self)
