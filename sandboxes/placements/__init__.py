"""Where a sandbox runs: container, bubblewrap and host-process placements (see ``base``)."""

from __future__ import annotations

from execloop.sandboxes.placements.base import GUEST_WORKSPACE, Placement

__all__ = ["GUEST_WORKSPACE", "Placement"]
