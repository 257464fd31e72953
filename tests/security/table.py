"""``python -m tests.security.table [--write | --check]``: the README's measured isolation table
from the outcomes the last ``pytest tests/security`` run wrote (``build/security/results.json``).

Without an option it prints the table; ``--write`` replaces the README's block between the
markers; ``--check`` exits 1 when the README differs. One line per error, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .catalog import BEGIN, END, RESULTS, render_table
from .runner import Outcome

README = Path(__file__).resolve().parents[2] / "README.md"


class TableError(Exception):
    """What the command cannot do, said in one line."""


def load_outcomes(path: Path) -> list[Outcome]:
    if not path.is_file():
        raise TableError(f"no results at {path}: run `pytest tests/security` first")
    try:
        rows = json.loads(path.read_text())
        return [Outcome(**row) for row in rows]
    except (ValueError, TypeError) as exc:
        raise TableError(f"{path} is not a results file of this suite ({exc}); rerun it") from None


def replace_block(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise TableError(f"the README has no block between {BEGIN!r} and {END!r}")
    return readme[: start + len(BEGIN)] + "\n" + table + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.table", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the table into the README")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    try:
        table = render_table(load_outcomes(args.results))
        if not (args.write or args.check):
            print(table, end="")
            return 0
        if "| ? |" in table or " ? |" in table:
            raise TableError("some claimed cases have no outcome: run the whole suite first")
        current = args.readme.read_text(encoding="utf-8")
        wanted = replace_block(current, table)
        if args.check:
            if wanted != current:
                print(f"{args.readme} differs from the suite's results: run with --write")
                return 1
            return 0
        args.readme.write_text(wanted, encoding="utf-8")
        return 0
    except (TableError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
