"""A task's checkpoint directory: a host folder every attempt's sandbox sees at
``/checkpoints`` (``EXECLOOP_CHECKPOINT_DIR``), so a script killed by its timeout, the OOM
killer or a host restart resumes from its last checkpoint instead of starting over.

A task asks for one with ``checkpoint_size`` in its sandbox spec. Under a broker it lives
beside the runs database (``<db folder>/checkpoints/<task id>``), so a broker that resumes the
task after a crash finds it; without one it is a temporary folder for the task's run. It is
removed once the task has its final result. A bind mount has no size limit of its own, so the
cap is watched from the host: a run whose folder grows past it is stopped (its sandbox killed,
``killed``) within about a second, and a run that leaves more fails with a check saying so.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread

from execloop.runtime.checks import CheckOutcome
from execloop.runtime.host_files import human_bytes
from execloop.sandboxes.base import ExecResult, ExitReason
from execloop.sandboxes.placements.base import workspace_owner
from execloop.sandboxes.spec import CHECKPOINT_ENV, SANDBOX_UID, SandboxSpec
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = [
    "CHECKPOINTS_FOLDER",
    "TaskCheckpoints",
    "directory_size",
    "remove_task_checkpoints",
    "store_checkpoint_root",
]

CHECKPOINTS_FOLDER = "checkpoints"
_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def store_checkpoint_root(database: Path) -> Path:
    """Where the checkpoint directories of a runs database's tasks live."""
    return database.parent / CHECKPOINTS_FOLDER


def directory_size(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (symbolic links are not followed)."""
    total = 0
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def _folder_name(task_id: str) -> str:
    if _PLAIN.fullmatch(task_id):
        return task_id
    return "task-" + hashlib.sha256(task_id.encode()).hexdigest()[:32]


def remove_task_checkpoints(root: Path, task_id: str) -> None:
    """Remove a task's folder under ``root`` (if any): its result is stored, cancelled too."""
    shutil.rmtree(root / _folder_name(task_id), ignore_errors=True)


class TaskCheckpoints:
    """The checkpoint directory of one task (see the module docstring). ``spec`` is the task's
    spec with ``checkpoint_dir`` filled in; ``owned`` says whether execloop made the folder
    (and so removes it when the task ends)."""

    def __init__(self, spec: SandboxSpec, *, folder: Path | None, owned: bool, temp: bool):
        self.spec = spec
        self.folder = folder
        self.owned = owned
        self._temp = temp

    @classmethod
    def open(cls, spec: SandboxSpec, *, task_id: str, root: Path | None) -> TaskCheckpoints:
        """The task's folder, created if the spec asks for one and names none; a folder left
        by an earlier run of the same task (a crashed broker) is reused as it is."""
        if spec.checkpoint_dir is not None or spec.checkpoint_size is None:
            return cls(spec, folder=spec.checkpoint_dir, owned=False, temp=False)
        if root is None:
            folder, temp = make_temp_dir("checkpoints"), True
        else:
            folder, temp = root / _folder_name(task_id), False
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the sandbox runs as the workspace's owner or uid 1000
            uid, gid = (
                workspace_owner(spec.workspace_dir)
                if spec.workspace_dir is not None
                else (SANDBOX_UID, SANDBOX_UID)
            )
            os.chown(folder, uid, gid)
        spec = spec.model_copy(update={"checkpoint_dir": folder})
        return cls(spec, folder=folder, owned=True, temp=temp)

    async def guard(
        self, run: Callable[[], Awaitable[ExecResult]], *, interval_s: float = 1.0
    ) -> ExecResult:
        """``run()``'s result, or a ``killed`` one when the folder outgrew the cap while it ran
        (then the exec was cancelled, which kills its sandbox, as a timeout does)."""
        limit, folder = self.spec.checkpoint_size, self.folder
        if folder is None or limit is None:
            return await run()
        began, result, seen = time.monotonic(), None, 0

        async def watch() -> None:
            nonlocal seen
            while seen <= limit:
                await anyio.sleep(interval_s)
                seen = await anyio.to_thread.run_sync(directory_size, folder)
            group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            result = await run()
            group.cancel_scope.cancel()
        if result is not None:
            return result
        return ExecResult(
            exit_code=None,
            exit_reason=ExitReason.KILLED,
            stderr=f"execloop stopped the script: ${CHECKPOINT_ENV} grew to {human_bytes(seen)}, "
            f"over checkpoint_size {human_bytes(limit)}\n",
            duration_s=time.monotonic() - began,
        )

    def check(self) -> CheckOutcome | None:
        """A failed ``checkpoint_size`` check when the folder holds more than the cap."""
        limit = self.spec.checkpoint_size
        if self.folder is None or limit is None:
            return None
        size = directory_size(self.folder)
        if size <= limit:
            return None
        return CheckOutcome(
            name="checkpoint_size",
            kind="checkpoints",
            passed=False,
            reason=f"${CHECKPOINT_ENV} holds {human_bytes(size)}, over checkpoint_size "
            f"{human_bytes(limit)}: keep only the latest checkpoint (delete older ones) or "
            "raise checkpoint_size",
        )

    def discard(self) -> None:
        """Remove the folder execloop made (the task has its final result)."""
        if not self.owned or self.folder is None:
            return
        if self._temp:
            remove_temp_dir(self.folder)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
