"""Every attack a backend claims to stop, run on that backend and judged (one session per
backend; a fresh one where an attack ends it)."""

from __future__ import annotations

import pytest

from .attacks import ALL_BACKENDS, Decoys
from .catalog import ATTACKS, HOST_ATTACKS, all_cases
from .runner import Outcome, run_attacks

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("backend", ALL_BACKENDS)
async def test_every_claimed_attack_is_stopped(
    backend: str, decoys: Decoys, security_results: list[Outcome]
) -> None:
    outcomes = await run_attacks(backend, ATTACKS, HOST_ATTACKS, decoys)
    security_results.extend(outcomes)
    claimed = sorted(case.name for case in all_cases() if backend in case.claimed)
    assert sorted(o.attack for o in outcomes) == claimed
    failed = [f"{o.attack}: {o.detail}" for o in outcomes if not o.stopped]
    assert not failed, "\n".join(failed)
