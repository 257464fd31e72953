"""Shared fixtures. Docker-backed tests fail (never skip) when no daemon answers: the README's
test command starts Docker and builds the images first."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
            all=True, filters={"label": LABEL_MANAGED}
        )
        if container.labels.get(LABEL_OWNER) == mine
    ]
    assert not leaked, f"sandbox containers leaked by the test session: {leaked}"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
