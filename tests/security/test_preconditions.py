"""Every case is a real attack: the same script, in a container with the protection in
question relaxed (never bare on the host), shows the behaviour the backends stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from .attacks import Attack, Decoys, HostAttack, Weakening
from .catalog import ATTACKS, HOST_ATTACKS, all_cases
from .runner import run_weakened

pytestmark = pytest.mark.anyio


def _proofs() -> dict[str, tuple[Weakening, list[Attack | HostAttack]]]:
    groups: dict[str, tuple[Weakening, list[Attack | HostAttack]]] = {}
    for case in [*ATTACKS, *HOST_ATTACKS]:
        if case.weakening is not None:
            groups.setdefault(case.weakening.name, (case.weakening, []))[1].append(case)
    return groups


PROOFS = _proofs()


def _script(case: Attack | HostAttack, decoys: Decoys) -> str:
    if isinstance(case, Attack):
        return case.script(decoys, armed=False)
    return case.proof_code.format(**decoys.fields(), armed=False)


@pytest.mark.parametrize("weakening", list(PROOFS))
async def test_each_attack_works_in_a_weakened_sandbox(
    weakening: str, proof_decoys: Decoys, tmp_path: Path
) -> None:
    weak, cases = PROOFS[weakening]
    scripts = {case.name: _script(case, proof_decoys) for case in cases}
    outputs = await run_weakened(weak, scripts, proof_decoys, tmp_path)
    not_shown = []
    for case in cases:
        assert case.shown is not None
        problem = case.shown(outputs[case.name], proof_decoys)
        if problem:
            not_shown.append(f"{case.name}: {problem}")
    assert not not_shown, "\n".join(not_shown)


def test_every_case_has_a_proof_and_a_unique_name() -> None:
    cases = all_cases()
    assert len(cases) >= 40
    assert len({case.name for case in cases}) == len(cases)
    for case in cases:
        # no weakened run only where the script's own control call proves the channel works,
        # or where the host seeing the attack is the proof
        evident = isinstance(case, Attack) and case.self_evident
        assert case.weakening is not None or case.bridge or evident, case.name
        assert (case.weakening is None) == (case.shown is None), case.name
        assert case.claimed, case.name
