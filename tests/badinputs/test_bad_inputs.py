"""The bad-input suite: every case of the table, end to end on the installed ``execloop``.

A case passes when its outcome is *clear*: the exit status and the message it must print, no
traceback, no hang, nothing left behind (processes, temp dirs, containers), no file changed
outside its workspace, no host secret exposed. ``bench/bad_inputs.py`` runs the same table and
counts the outcomes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.badinputs.harness import Case, run_case
from tests.badinputs.table import CASES, SELF_CHECKS


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    # not pytest's tmp_path: its 0700 parents are closed to the sandbox user (uid 1000)
    with tempfile.TemporaryDirectory(prefix="badinputs-") as folder:
        Path(folder).chmod(0o755)
        yield Path(folder)


def _docker_client() -> Any:
    from execloop.sandboxes.docker_backend import default_client

    return default_client()


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(case, id=case.id, marks=[pytest.mark.docker] if case.docker else [])
        for case in cases
    ]


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input_is_a_clear_error_and_leaves_nothing(case: Case, base: Path) -> None:
    verdict = run_case(case, base=base, docker=_docker_client() if case.docker else None)
    assert verdict.outcome == "clear", "\n".join([*verdict.problems, verdict.output])


@pytest.mark.parametrize("case", [c for c, _ in SELF_CHECKS], ids=[c.id for c, _ in SELF_CHECKS])
def test_the_harness_sees_each_kind_of_failure(case: Case, base: Path) -> None:
    """A case built to fail in one way is judged that way (the suite can fail)."""
    expected = dict((c.id, outcome) for c, outcome in SELF_CHECKS)[case.id]
    verdict = run_case(case, base=base)
    assert verdict.outcome == expected, verdict.problems


def test_the_table_covers_the_issue() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
