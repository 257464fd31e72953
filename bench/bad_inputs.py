"""The bad-input table against this installation, counted by outcome.

    python bench/bad_inputs.py [--no-docker] [-k WORDS] [--json FILE] [--verbose]

Runs every case of ``tests/badinputs`` (the same table the test suite runs) and prints how
many ended in each outcome: a clear error, a traceback, a hang, a leak, lost or overwritten
data, a host file exposed, a wrong or silent status. The "before" row is the one issue 8
reported for 96 inputs tried by hand before the fixes (taken from the issue, not measured
here); "after" is this run. Exit status 1 if any case is not clear.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests/badinputs

from tests.badinputs.harness import OUTCOMES, Verdict, run_case
from tests.badinputs.table import CASES

# Issue 8, "tried as a new user would": 96 inputs before the fixes.
BEFORE = {
    "inputs": 96,
    "clear": 33,
    "traceback": 15,
    "hang": 2,
    "leak": 3,
    "lost data": 4,
    "host-file exposure": 3,
    "wrong status": 13,
}


def _docker() -> Any:
    from execloop.sandboxes.docker_backend import default_client

    return default_client()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-docker", action="store_true", help="skip the Docker cases")
    parser.add_argument("-k", dest="words", help="only cases whose id contains WORDS")
    parser.add_argument("--json", type=Path, help="write every verdict and the counts here")
    parser.add_argument("--verbose", action="store_true", help="print each case as it ends")
    options = parser.parse_args()
    cases = [
        case
        for case in CASES
        if not (options.no_docker and case.docker)
        and (options.words is None or options.words in case.id)
    ]
    docker = None if options.no_docker else _docker()
    verdicts: list[Verdict] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as folder:
        Path(folder).chmod(0o755)  # the sandbox user must reach the cases' folders
        for case in cases:
            verdict = run_case(case, base=Path(folder), docker=docker if case.docker else None)
            verdicts.append(verdict)
            if options.verbose or verdict.outcome != "clear":
                print(f"{verdict.outcome:18} {verdict.seconds:6.1f}s  {case.id}", flush=True)
                for problem in verdict.problems:
                    print(f"{'':28}{problem}")
    took = time.monotonic() - began
    after = Counter(verdict.outcome for verdict in verdicts)
    print(f"\n{'':28}{'inputs':>7}" + "".join(f"{name:>20}" for name in OUTCOMES))
    print(
        f"{'before (issue 8, by hand)':28}{BEFORE['inputs']:>7}"
        + "".join(f"{BEFORE[name]:>20}" for name in OUTCOMES)
    )
    print(
        f"{'after (this run)':28}{len(verdicts):>7}" + "".join(f"{after[n]:>20}" for n in OUTCOMES)
    )
    print(f"\n{len(verdicts)} cases in {took:.0f} s")
    if options.json is not None:
        options.json.write_text(
            json.dumps(
                {
                    "before": BEFORE,
                    "after": {"inputs": len(verdicts), **{n: after[n] for n in OUTCOMES}},
                    "seconds": took,
                    "cases": [
                        {
                            "id": v.case,
                            "outcome": v.outcome,
                            "problems": list(v.problems),
                            "status": v.status,
                            "seconds": v.seconds,
                        }
                        for v in verdicts
                    ],
                },
                indent=2,
            )
        )
    return 0 if after["clear"] == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
