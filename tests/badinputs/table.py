"""The whole case table (``CASES``), and cases built to fail one way each (``SELF_CHECKS``), so
the harness is shown to see every outcome it counts."""

from __future__ import annotations

from tests.badinputs.cases_api import API_CASES
from tests.badinputs.cases_cli import CLI_CASES
from tests.badinputs.cases_docker import DOCKER_CASES
from tests.badinputs.cases_files import FILE_CASES
from tests.badinputs.harness import Case

__all__ = ["CASES", "SELF_CHECKS"]

CASES: list[Case] = [*CLI_CASES, *FILE_CASES, *API_CASES, *DOCKER_CASES]


SELF_CHECKS: list[tuple[Case, str]] = [
    (Case("self: a traceback", 2, (), api="raise KeyError('x')"), "traceback"),
    (
        Case("self: a hang", 0, (), api="import time\ntime.sleep(60)", timeout_s=2),
        "hang",
    ),
    (
        Case(
            "self: a process left behind",
            0,
            (),
            api="import subprocess as s\n"
            "s.Popen(['sleep', '60'], start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL)",
            settle_s=1,
        ),
        "leak",
    ),
    (
        Case(
            "self: a temp dir left behind",
            0,
            (),
            api="import tempfile\ntempfile.mkdtemp(prefix='execloop-x-')",
            settle_s=1,
        ),
        "leak",
    ),
    (
        Case(
            "self: a user file overwritten",
            0,
            (),
            api=lambda ctx: f"open({str(ctx.root / 'host' / 'notes.txt')!r}, 'w').write('gone')",
        ),
        "lost data",
    ),
    (
        Case(
            "self: the host secret printed",
            0,
            (),
            api=lambda ctx: f"print(open({str(ctx.secret)!r}).read())",
        ),
        "host-file exposure",
    ),
    (Case("self: a wrong status", 1, ("never printed",), api="print('fine')"), "wrong status"),
    (
        Case(
            "self: a clear error",
            2,
            ("ConfigError", "bad"),
            api="from execloop.errors import ConfigError\nraise ConfigError('bad')",
        ),
        "clear",
    ),
]
