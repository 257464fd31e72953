"""The README's measured table is what a green suite writes, and the command that writes it
says what is wrong in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from .catalog import BEGIN, END, claimed_outcomes, render_table
from .table import README, main


def _block(readme: str) -> str:
    return readme[readme.index(BEGIN) + len(BEGIN) + 1 : readme.index(END)]


def test_the_readme_holds_the_table_of_a_green_suite() -> None:
    # test_attacks fails unless every claimed case is stopped, so this is its outcome table
    assert _block(README.read_text(encoding="utf-8")) == render_table(claimed_outcomes())


def test_the_command_writes_and_checks_the_readme_from_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = claimed_outcomes()
    outcomes[0] = dataclasses.replace(outcomes[0], stopped=False, detail="got through")
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes]))
    readme.write_text(f"# x\n{BEGIN}\nSTALE TABLE\n{END}\nrest\n")
    paths = ["--results", str(results), "--readme", str(readme)]
    assert main(["--check", *paths]) == 1
    assert main(["--write", *paths]) == 0
    assert main(["--check", *paths]) == 0
    written = readme.read_text()
    assert written.endswith(f"{END}\nrest\n") and "STALE" not in written
    first = _block(written).splitlines()[2]
    assert first.startswith(f"| {outcomes[0].category} | {outcomes[0].attack} |") and "❌" in first
    results.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes[1:]]))
    assert main(["--write", *paths]) == 2
    assert main(["--results", str(tmp_path / "none.json"), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: some claimed cases have no outcome: run the whole suite first",
        f"error: no results at {tmp_path / 'none.json'}: run `pytest tests/security` first",
    ]
