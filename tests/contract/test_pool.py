"""Warm pools over real backends: handed-out sandboxes are started, clean, and never leak."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.pool import SandboxPool

from .backends import leftovers

pytestmark = pytest.mark.anyio


async def test_docker_pool_hands_out_clean_warm_sandboxes(docker_client: Any) -> None:
    seen: list[str] = []
    async with SandboxPool(SandboxSpec(), min_idle=2, max_size=3) as pool:
        with anyio.fail_after(60):
            await pool.wait_warm()
        assert pool.stats().idle == 2
        async with pool.acquire() as first:
            seen.append(first.session_id)
            await first.exec("secret = 42\nopen('mine.txt', 'w').write('x')")
        async with pool.acquire() as second:
            seen.append(second.session_id)
            probe = await second.exec(
                "import os\nprint('secret' in globals(), os.path.exists('mine.txt'))"
            )
    assert probe.stdout == "False False\n"
    assert seen[0] != seen[1]
    for session in seen:
        assert leftovers(session, docker_client) == []
