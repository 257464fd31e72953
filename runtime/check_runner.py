"""Run a task's checks, by the runtime, on what the script really produced.

Nothing the agent says is taken at its word: exit status and assertions are judged from the
host's ``ExecResult``; output files are read out of the sandbox and judged on the host (JSON
Schema, expressions in a capped child process); a pytest file is read fresh from the host; a
dataset is read in the sandbox but judged on the host. Every check returns a ``CheckOutcome``;
an infrastructure failure fails that check with the reason, and the others still run.

Checks that look at files run in the agent's sandbox, where a thread the script left behind
could still interfere: ``reverify`` re-runs everything on the final outputs, kept on the host,
before a task may be reported passed. Checks that run code (pytest, datasets) run again in a
fresh sandbox; when no check runs code, none is started: the verdicts are the host's own reading
of the host copy. A JSON output is fetched once per run of the checks (``OutputReader``), and
re-verification judges the host copy that it uploads.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import anyio.to_thread
import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from execloop.errors import ExecloopError, SandboxClosedError, TransferError
from execloop.runtime import bounds
from execloop.runtime.check_dataset import run_dataset
from execloop.runtime.check_expression import evaluate_bounded
from execloop.runtime.check_pytest import run_pytest
from execloop.runtime.checks import (
    AssertionsCheck,
    CheckOutcome,
    CheckSpec,
    DatasetCheck,
    ExitStatusCheck,
    ExpressionCheck,
    JsonSchemaCheck,
    PytestCheck,
    bounded_reason,
)
from execloop.sandboxes.base import ExecResult, Sandbox

__all__ = [
    "MAX_JSON_BYTES",
    "OutputReader",
    "assertions_verdict",
    "exit_status_verdict",
    "needs_sandbox",
    "reverify",
    "run_checks",
    "schema_verdict",
    "summarize",
]

MAX_JSON_BYTES = 8 * 1024**2  # result.json is a summary, not a data set
log = logging.getLogger("execloop.runtime.checks")


async def run_checks(
    checks: Sequence[CheckSpec],
    *,
    sandbox: Sandbox | None,
    run: ExecResult,
    check_files_root: Path | None,
    outputs: OutputReader | None = None,
) -> list[CheckOutcome]:
    """Every check's outcome, in order; never raises for a failing check or a dead sandbox.
    JSON outputs come through ``outputs`` (default: read from ``sandbox``), so a caller that
    passes its reader can read the answer from what the checks read, without a new fetch.
    ``sandbox`` may be None only when no check runs code (``needs_sandbox``)."""
    assert sandbox is not None or not needs_sandbox(checks)
    outputs = outputs or OutputReader(sandbox)
    outcomes = []
    for spec in checks:
        try:
            passed, reason = await _run_one(spec, sandbox, run, outputs, check_files_root)
        except SandboxClosedError as exc:
            passed, reason = False, f"the sandbox is dead, so this check could not run: {exc}"
        except ExecloopError as exc:
            passed, reason = False, f"sandbox error during the check: {exc}"
        outcomes.append(_outcome(spec, passed, reason))
    return outcomes


async def reverify(
    checks: Sequence[CheckSpec],
    *,
    sandbox_factory: Callable[[], Sandbox],
    restore: Sequence[Path],
    run: ExecResult,
    check_files_root: Path | None,
    outputs: OutputReader | None = None,
) -> list[CheckOutcome]:
    """Re-run every check on the agent's final files, ``restore``: host folders, later ones
    winning (e.g. the outputs, then the original inputs over them).

    Checks that run code run in a FRESH sandbox, the folders uploaded in order into its
    workspace: nothing of the agent's session exists there (no thread, no patched module), only
    its files. If that sandbox cannot be set up, every check fails saying so. JSON outputs are
    judged on the host copies in ``restore`` (the very bytes uploaded) unless ``outputs`` says
    else; when every check is judged on the host, no sandbox is started.
    """
    outputs = outputs or OutputReader(folders=restore)
    if not needs_sandbox(checks):
        return await run_checks(
            checks, sandbox=None, run=run, check_files_root=check_files_root, outputs=outputs
        )
    outcomes: list[CheckOutcome] | None = None
    try:
        async with sandbox_factory() as sandbox:
            for folder in restore:
                await sandbox.upload(folder)
            outcomes = await run_checks(
                checks,
                sandbox=sandbox,
                run=run,
                check_files_root=check_files_root,
                outputs=outputs,
            )
    except ExecloopError as exc:
        if outcomes is not None:  # only closing failed: the verdicts stand
            log.warning("closing the re-verification sandbox failed: %s", exc)
            return outcomes
        why = f"the fresh sandbox for re-verification failed: {exc}"
        return [_outcome(spec, False, why) for spec in checks]
    return outcomes


def needs_sandbox(checks: Sequence[CheckSpec]) -> bool:
    """Whether a check runs code (a pytest file, a dataset read): the others are judged on the
    host, from the ``ExecResult`` and the output files."""
    return any(isinstance(spec, PytestCheck | DatasetCheck) for spec in checks)


def summarize(outcomes: Sequence[CheckOutcome]) -> str:
    """One line: ``3/5 checks passed; failed: name: reason; name: reason``."""
    if not outcomes:
        return "no checks"
    failed = [o for o in outcomes if not o.passed]
    head = f"{len(outcomes) - len(failed)}/{len(outcomes)} checks passed"
    if not failed:
        return head
    listed = "; ".join(bounded_reason(f"{o.name}: {o.reason}", 120) for o in failed)
    return f"{head}; failed: {listed}"


# -- verdicts that need no sandbox (pure) ---------------------------------------------------
def exit_status_verdict(run: ExecResult) -> tuple[bool, str]:
    if run.ok:
        return True, "exit status 0"
    code = "no exit status" if run.exit_code is None else f"exit status {run.exit_code}"
    return False, f"the script ended with {run.exit_reason.value} ({code}): {_last_line(run)}"


def assertions_verdict(run: ExecResult) -> tuple[bool, str]:
    """Passed iff the run finished: a run that stopped early did not run all its assertions."""
    if run.ok:
        return True, "no assertion failed"
    raised = _last_exception(run.stderr)
    if raised is not None and raised[0].rsplit(".", 1)[-1] == "AssertionError":
        _, message, source = raised
        failed = f"{source} failed" if source.startswith("assert") else "an assertion failed"
        return False, f"{failed}: {message}" if message else failed
    return False, (
        f"the script did not finish ({run.exit_reason.value}: {_last_line(run)}), "
        "so its assertions did not all run"
    )


def schema_verdict(schema: dict[str, Any], document: Any) -> tuple[bool, str]:
    """JSON Schema validation (Draft 2020-12 unless ``$schema`` says otherwise)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return False, f"the check's own schema is invalid: {exc.message}"
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = list(validator.iter_errors(document))
    if not errors:
        return True, "valid"
    best = jsonschema.exceptions.best_match(errors)
    more = f" (+{len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return False, f"{best.json_path}: {bounded_reason(best.message, 200)}{more}"


def _last_line(run: ExecResult) -> str:
    lines = [line.strip() for line in run.stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("[... execloop:")]
    return lines[-1] if lines else "no stderr"


def _last_exception(stderr: str) -> tuple[str, str, str] | None:
    """``(type, message, source line)`` of the last traceback in ``stderr``."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call")]
    if not starts:
        return None
    source = ""
    for line in lines[starts[-1] + 1 :]:
        if line.startswith(" "):  # a frame: keep its code line (not the File line, not carets)
            code = line.strip()
            if code and not code.startswith("File ") and set(code) - set("^~ "):
                source = code
            continue
        name, _, message = line.partition(":")
        return name.strip(), message.strip(), source
    return None


# -- checks that read the sandbox ------------------------------------------------------------
class OutputReader:
    """The script's JSON outputs (``result.json``...), each fetched at most once and shared by
    every check and the answer: from a sandbox, or from host folders (the outputs kept for
    re-verification: later folders win, as when they are uploaded in order)."""

    def __init__(self, sandbox: Sandbox | None = None, *, folders: Sequence[Path] = ()) -> None:
        self.sandbox = sandbox
        self.folders = tuple(folders)
        self._cache: dict[str, tuple[bytes, object] | str] = {}

    async def load(self, path: str) -> tuple[bytes, object] | str:
        """``(raw, document)``, or the reason the file cannot be used."""
        if path not in self._cache:
            raw = await (self._fetch(path) if self.sandbox else self._read_host(path))
            self._cache[path] = raw if isinstance(raw, str) else _parsed(path, raw)
        return self._cache[path]

    async def answer(self, run: ExecResult) -> str:
        """The task's answer: ``result.json`` pretty-printed, else the stdout tail; bounded."""
        loaded = await self.load("result.json")
        if isinstance(loaded, str):  # missing, too big or not JSON
            return bounds.tail(run.stdout, bounds.ANSWER_CHARS)
        return bounds.head(json.dumps(loaded[1], indent=1), bounds.ANSWER_CHARS)

    async def _fetch(self, path: str) -> bytes | str:
        assert self.sandbox is not None
        try:
            found = await self.sandbox.artifacts(path)
            if len(found) != 1:
                return f"{path} is a directory, not a JSON file"
            if found[0].size_bytes > MAX_JSON_BYTES:
                return _too_big(path, found[0].size_bytes)
            return await self.sandbox.read_file(path)
        except TransferError as exc:  # what the helper says when the file is not there
            return f"{path} is missing: {exc}"

    async def _read_host(self, path: str) -> bytes | str:
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            return f"{path} is missing: it is outside the workspace"
        for folder in reversed(self.folders):
            target = folder / relative
            try:
                info = target.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                return f"{path} is a directory, not a JSON file"
            if not stat.S_ISREG(info.st_mode):  # an upload skips links: so does this
                continue
            if info.st_size > MAX_JSON_BYTES:
                return _too_big(path, info.st_size)
            return await anyio.to_thread.run_sync(target.read_bytes)
        return f"{path} is missing: it is not among the outputs"


def _too_big(path: str, size: int) -> str:
    return f"{path} has {size} bytes; checks read at most {MAX_JSON_BYTES}"


def _parsed(path: str, raw: bytes) -> tuple[bytes, object] | str:
    try:
        return raw, json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return f"{path} is not valid JSON: {exc}"


async def _run_one(
    spec: CheckSpec,
    sandbox: Sandbox | None,
    run: ExecResult,
    outputs: OutputReader,
    check_files_root: Path | None,
) -> tuple[bool, str]:
    if isinstance(spec, ExitStatusCheck):
        return exit_status_verdict(run)
    if isinstance(spec, AssertionsCheck):
        return assertions_verdict(run)
    if isinstance(spec, PytestCheck):
        assert sandbox is not None
        return await run_pytest(spec, sandbox=sandbox, check_files_root=check_files_root)
    if isinstance(spec, DatasetCheck):
        assert sandbox is not None
        return await run_dataset(spec, sandbox=sandbox)
    loaded = await outputs.load(spec.path)
    if isinstance(loaded, str):
        return False, loaded
    raw, document = loaded
    if isinstance(spec, JsonSchemaCheck):  # a big document must not stall the event loop
        return await anyio.to_thread.run_sync(schema_verdict, spec.json_schema, document)
    assert isinstance(spec, ExpressionCheck)
    return await evaluate_bounded(spec.expr, raw)


def _outcome(spec: CheckSpec, passed: bool, reason: str) -> CheckOutcome:
    return CheckOutcome(
        name=spec.label(), kind=spec.kind, passed=passed, reason=bounded_reason(reason)
    )
