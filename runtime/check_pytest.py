"""Pytest checks: the host's test file, run by pytest inside the sandbox, judged on the host.

The file is read from the host at every check (the agent cannot edit it) and uploaded into a
fresh folder with our own ``pytest.ini`` and ``conftest.py``. Pytest runs in a child process
with ``python -I`` (the workspace is not on ``sys.path`` ahead of pytest, no user site, no
``PYTHON*`` variables), a clean environment (no ``PYTEST_ADDOPTS``), ``--rootdir``, ``-c`` and
``--confcutdir`` pinned to that folder (the agent's ``pytest.ini``/``conftest.py`` are never
read) and a timeout. Our conftest *appends* the workspace to ``sys.path`` so tests can import
the agent's modules without those shadowing anything installed. A test that imports the agent's
code runs it inside pytest, where it could subvert pytest itself: tests that only read output
files are the ones to rely on. The file's hash is compared before and after pytest: a thread
the script left running can rewrite files in its own session, which ``reverify`` (a fresh
sandbox) rules out; the hash makes such tampering visible in the session too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, ValidationError

from execloop.runtime.check_sandbox import run_in_sandbox
from execloop.runtime.checks import PytestCheck
from execloop.sandboxes.base import Sandbox

__all__ = ["PytestFailure", "PytestReport", "pytest_in_sandbox", "pytest_verdict", "run_pytest"]

_INI = "[pytest]\njunit_family = xunit2\n"
_CONFTEST = (
    "import os, sys\n"
    "# The agent's modules are importable, after everything installed (never ahead of it).\n"
    "sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))\n"
)
_OWN_FILES = {"pytest.ini", "conftest.py", "run.py"}
_GRACE_S = 15.0  # the in-sandbox pytest timeout fires first, so the sandbox survives it


class PytestFailure(BaseModel):
    test: str
    message: str = ""


class PytestReport(BaseModel):
    """What ``pytest_in_sandbox`` reports (untrusted JSON, hence validated)."""

    exit_code: int | None = None
    timed_out: bool = False
    tests: int = 0
    skipped: int = 0
    failed: list[PytestFailure] = []
    n_failed: int = 0
    tail: str = ""


def pytest_in_sandbox(params: dict[str, Any], here: str) -> dict[str, Any]:
    """Runs INSIDE the sandbox: pytest on ``here/params["file"]``, summarised from JUnit XML."""
    import hashlib
    import os
    import subprocess
    import sys
    import xml.etree.ElementTree as ElementTree

    test_file = os.path.join(here, params["file"])
    report_xml = os.path.join(here, "report.xml")
    log_path = os.path.join(here, "pytest.log")

    def changed() -> bool:  # by something of the agent's still running in this session
        try:
            with open(test_file, "rb") as handle:
                return bool(hashlib.sha256(handle.read()).hexdigest() != params["sha256"])
        except OSError:
            return True

    command = [sys.executable, "-I", "-B", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["--rootdir", here, "-c", os.path.join(here, "pytest.ini"), "--confcutdir", here]
    command += [f"--junitxml={report_xml}", *params["args"], test_file]
    env = {"HOME": "/tmp", "LANG": "C.UTF-8", "PATH": os.path.dirname(sys.executable) + ":/bin"}
    if changed():
        return {"error": "the check file was changed in the sandbox before it ran (tampering)"}
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(
                command,
                cwd=os.path.dirname(here),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=params["timeout"],
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"timed_out": True}
    if changed():
        return {"error": "the check file was changed in the sandbox while it ran (tampering)"}
    with open(log_path, "rb") as output:
        output.seek(max(0, os.path.getsize(log_path) - 2000))
        tail = output.read().decode("utf-8", "replace")
    tests = skipped = 0
    failed: list[dict[str, str]] = []
    if os.path.exists(report_xml):
        root = ElementTree.parse(report_xml).getroot()
        for suite in root.iter("testsuite"):
            tests += int(suite.get("tests", "0"))
            skipped += int(suite.get("skipped", "0"))
        for case in root.iter("testcase"):
            for outcome in case:
                if outcome.tag in ("failure", "error"):
                    message = outcome.get("message") or ""
                    if message in ("", "collection failure"):  # the cause is the text's end
                        lines = (outcome.text or "").strip().splitlines()
                        message = lines[-1] if lines else message
                    failed.append({"test": case.get("name", "?"), "message": message[:500]})
    return {
        "exit_code": done.returncode,
        "tests": tests,
        "skipped": skipped,
        "failed": failed[:10],
        "n_failed": len(failed),
        "tail": tail,
    }


def pytest_verdict(raw: dict[str, Any], *, file: str, timeout_s: float) -> tuple[bool, str]:
    """``(passed, reason)``: passed iff pytest exited 0 having run (not skipped) every test."""
    if "error" in raw:
        return False, f"pytest could not run {file}: {raw['error']}"
    try:
        report = PytestReport.model_validate(raw)
    except ValidationError as exc:
        return False, f"malformed pytest report from the sandbox: {exc.error_count()} errors"
    if report.timed_out:
        return False, f"pytest {file} did not finish within {timeout_s:g} s"
    if report.n_failed:
        listed = "; ".join(f"{f.test} ({_first_line(f.message)})" for f in report.failed[:5])
        return False, f"{report.n_failed} of {report.tests} tests failed: {listed}"
    if report.exit_code == 5 or (report.exit_code == 0 and report.tests == 0):
        return False, f"no tests collected from {file}"
    if report.exit_code != 0:
        return False, f"pytest exited with status {report.exit_code}: {_last_line(report.tail)}"
    if report.skipped:
        return False, f"{report.skipped} of {report.tests} tests skipped; check tests must run"
    return True, f"{report.tests} tests passed"


async def run_pytest(
    spec: PytestCheck, *, sandbox: Sandbox, check_files_root: Path | None
) -> tuple[bool, str]:
    """Upload the host's file fresh, run it in the sandbox, judge the report."""
    if check_files_root is None:
        return False, f"no check files root was given, so {spec.file} cannot be found"
    found = await anyio.to_thread.run_sync(_read_host_file, check_files_root, spec.file)
    if isinstance(found, str):
        return False, found
    path, content = found
    timeout_s = sandbox.spec.timeout_s
    report = await run_in_sandbox(
        sandbox,
        pytest_in_sandbox,
        {
            "file": path.name,
            "args": list(spec.args),
            "timeout": timeout_s,
            "sha256": hashlib.sha256(content).hexdigest(),
        },
        files={path.name: content, "pytest.ini": _INI, "conftest.py": _CONFTEST},
        timeout=timeout_s + _GRACE_S,
    )
    return pytest_verdict(report, file=spec.file, timeout_s=timeout_s)


def _read_host_file(root: Path, file: str) -> tuple[Path, bytes] | str:
    """The check file's bytes, read now (never cached), or why it cannot be used."""
    root = root.resolve()
    path = (root / file).resolve()
    if root not in path.parents:
        return f"{file} is outside the check files root {root}"
    if path.name in _OWN_FILES:
        return f"a pytest check file cannot be named {path.name}"
    try:
        return path, path.read_bytes()
    except OSError as exc:
        return f"cannot read {file} on the host: {exc}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E ", "ERROR"))]
    return (errors or lines or [""])[-1]
