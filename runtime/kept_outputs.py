"""The outputs of an attempt whose checks passed in its sandbox: copied to the host, re-checked
there with the original inputs restored (checks that run code run again in a fresh sandbox,
where a background thread left by the script cannot fake a verdict), and moved to the caller's
``outputs_dir`` once they pass."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from execloop.runtime.check_runner import OutputReader, reverify
from execloop.runtime.checks import CheckOutcome, CheckSpec
from execloop.runtime.host_files import human_bytes
from execloop.runtime.inputs import Inputs
from execloop.sandboxes import ExecResult, Sandbox
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = [
    "REVERIFY_FAILED",
    "keep_outputs",
    "move_outputs",
    "outputs_folder",
    "refused_outcomes",
    "reverify_outputs",
]

REVERIFY_FAILED = (
    "Your checks passed in your sandbox but failed when re-run on the files you left, with the "
    "original inputs restored (checks that run code, in a fresh sandbox): do not rely on state "
    "outside the files you write, and do not edit the inputs."
)


@asynccontextmanager
async def outputs_folder() -> AsyncIterator[Path]:
    """A temporary host folder for one attempt's kept outputs, removed afterwards; shielded,
    as a cancelled task must not leave its outputs behind."""
    outputs = make_temp_dir("outputs")
    try:
        yield outputs
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(remove_temp_dir, outputs)


async def keep_outputs(
    sandbox: Sandbox,
    outputs: Path,
    *,
    inputs: Inputs,
    workspace: tuple[int, int],
    workspace_size: int,
) -> str | None:
    """Copy the workspace (``workspace``: its files and bytes) into the host folder
    ``outputs`` for re-verification; the reason if it is larger than ``workspace_size``."""
    files, size = workspace
    if size > workspace_size:
        return (
            f"the outputs ({files:,} files, {human_bytes(size)}) are larger than "
            f"workspace_size ({human_bytes(workspace_size)}), so they cannot be "
            f"re-verified"
        )
    await sandbox.download(".", outputs)
    # checks may read the inputs back: they are judged with the originals, restored over
    # whatever the script left under their names
    await anyio.to_thread.run_sync(inputs.prune_conflicts, outputs)
    return None


def refused_outcomes(checks: Sequence[CheckSpec], reason: str) -> list[CheckOutcome]:
    """Every check failed with ``reason``: outputs that could not be kept are not verified."""
    return [CheckOutcome(name=c.label(), kind=c.kind, passed=False, reason=reason) for c in checks]


async def reverify_outputs(
    checks: Sequence[CheckSpec],
    *,
    outputs: Path,
    staged: Path | None,
    run: ExecResult,
    sandbox_factory: Callable[[], Sandbox],
    check_files_root: Path | None,
) -> tuple[list[CheckOutcome], str | None]:
    """The checks re-run on the kept ``outputs`` with the ``staged`` inputs restored over
    them, and the answer read from those same bytes (None unless every check passed)."""
    restore = [outputs] if staged is None else [outputs, staged]
    reader = OutputReader(folders=restore)  # the bytes re-verified are the answer's
    outcomes = await reverify(
        checks,
        sandbox_factory=sandbox_factory,
        restore=restore,
        run=run,
        check_files_root=check_files_root,
        outputs=reader,
    )
    if not all(o.passed for o in outcomes):
        return outcomes, None
    return outcomes, await reader.answer(run)


def move_outputs(outputs: Path, dest: Path) -> None:
    """The verified workspace ``outputs`` becomes ``dest`` (a new or empty directory; its
    parent is created). Nothing is overwritten: a ``dest`` with anything in it is refused."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.mkdir()
    except FileExistsError:
        if dest.is_symlink() or not dest.is_dir() or any(dest.iterdir()):
            raise
    for item in outputs.iterdir():
        item.rename(dest / item.name)
