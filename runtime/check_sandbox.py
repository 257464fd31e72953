"""Run one of the runtime's check functions inside a sandbox and get its JSON report back.

The function (a plain, type-checked function of a host module, shipped by its source) is written
with any helper files into a fresh, randomly named folder of the workspace and run with
``exec_file``; it removes the folder before it reports, so nothing of the check stays among the
agent's outputs. The helper merges a file's top-level names into the agent's session, so the
script defines only ``__``-names and deletes the function's name before it ends.
"""

from __future__ import annotations

import inspect
import json
import secrets
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from execloop.runtime.checks import bounded_reason
from execloop.sandboxes.base import ExecResult, Sandbox

__all__ = ["CHECK_DIR_PREFIX", "REPORT_MARKER", "check_script", "parse_report", "run_in_sandbox"]

CHECK_DIR_PREFIX = ".execloop-checks-"
REPORT_MARKER = "@execloop-check-report "
SandboxFunction = Callable[[dict[str, Any], str], dict[str, Any]]

_WRAPPER = """\
from __future__ import annotations

{source}

def __execloop_main() -> None:
    import json, os, shutil, sys

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        report = {name}(json.loads(sys.argv[1]), here)
    except Exception as exc:  # the host turns it into the check's reason
        report = {{"error": f"{{type(exc).__name__}}: {{exc}}"}}
    finally:
        shutil.rmtree(here, ignore_errors=True)
    sys.stdout.write("\\n" + {marker!r} + json.dumps(report, default=str) + "\\n")


try:
    __execloop_main()
finally:
    del annotations, {name}
"""


def check_script(function: SandboxFunction) -> str:
    """The source of the script that runs ``function(params, here)`` and prints its report."""
    source = textwrap.dedent(inspect.getsource(function))
    return _WRAPPER.format(source=source, name=function.__name__, marker=REPORT_MARKER)


def parse_report(run: ExecResult) -> dict[str, Any]:
    """The report the script printed last, or ``{"error": why there is none}``."""
    for line in reversed(run.stdout.split("\n")):  # not splitlines(): it splits at \x1c-\x1e too
        if line.startswith(REPORT_MARKER):
            try:
                report = json.loads(line[len(REPORT_MARKER) :])
            except ValueError:
                break
            if isinstance(report, dict):
                return report
            break
    last = next((ln for ln in reversed(run.stderr.splitlines()) if ln.strip()), "")
    return {
        "error": bounded_reason(
            f"the check script in the sandbox ended ({run.exit_reason.value}) without a "
            f"readable report{' (output truncated)' if run.stdout_truncated else ''}: {last}"
        )
    }


async def run_in_sandbox(
    sandbox: Sandbox,
    function: SandboxFunction,
    params: Mapping[str, Any],
    *,
    files: Mapping[str, bytes | str] | None = None,
    timeout: float,
) -> dict[str, Any]:
    """Run ``function(params, folder)`` in the sandbox; its report or ``{"error": ...}``.

    Infrastructure errors (the sandbox died, a transfer failed) propagate.
    """
    folder = CHECK_DIR_PREFIX + secrets.token_hex(8)
    upload = {f"{folder}/{name}": content for name, content in (files or {}).items()}
    upload[f"{folder}/run.py"] = check_script(function)
    await sandbox.upload(upload)
    run = await sandbox.exec_file(f"{folder}/run.py", args=[json.dumps(params)], timeout=timeout)
    return parse_report(run)
