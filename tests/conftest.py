"""Shared fixtures. Docker-backed tests fail (never skip) when no daemon answers: the README's
test command starts Docker and builds the images first."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def docker_client() -> Any:
    from execloop.sandboxes.docker_backend import default_client

    return default_client()


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the whole session, no container started by this process may remain."""
    yield
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        return
    from execloop.sandboxes.docker_backend import default_client
    from execloop.sandboxes.reaper import LABEL_MANAGED, LABEL_OWNER, owner_id

    mine = owner_id(os.getpid())
    leaked = [
        container.name
        for container in default_client().containers.list(
            all=True, filters={"label": LABEL_MANAGED}, ignore_removed=True
        )
        if container.labels.get(LABEL_OWNER) == mine
    ]
    assert not leaked, f"sandbox containers leaked by the test session: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_temp_dirs() -> Iterator[None]:
    """After the whole session, no execloop temp dir made during it may remain if its owner
    is this process or is gone (a killed child's dirs must be reaped by the test that killed
    it)."""
    from execloop.sandboxes.tempdirs import PREFIX, orphaned_temp_dirs

    root = Path(tempfile.gettempdir())
    before = set(root.glob(f"{PREFIX}*"))
    yield
    mine = f"-{os.getpid()}."
    leaked = sorted(
        str(path)
        for path in (set(root.glob(f"{PREFIX}*")) - before)
        if mine in path.name or path in set(orphaned_temp_dirs(root))
    )
    assert not leaked, f"execloop temp dirs leaked by the test session: {leaked}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
