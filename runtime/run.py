"""Run one script in a fresh sandbox: the smallest useful thing execloop does.

``run_script`` is the one synchronous entry point; it refuses to run inside an event loop
(use ``await run_script_async(...)`` there) instead of silently nesting loops. Whatever the
script does is data: a script that ends its own session (``os._exit``, no memory or file
descriptor left for the sandbox) still gives a ``ScriptRun``, whose ``ended`` says why.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from execloop.errors import ConfigError, SandboxClosedError
from execloop.sandboxes import Artifact, ExecResult, Manifest, SandboxSpec, create_sandbox
from execloop.sandboxes.spec import coerce_spec

__all__ = ["MAX_SCRIPT_BYTES", "ScriptRun", "run_script", "run_script_async"]

SCRIPT_NAME = "main.py"
MAX_SCRIPT_BYTES = 16 * 1024**2


class ScriptRun(BaseModel):
    """What one script run produced: its result and a bounded manifest of the workspace."""

    model_config = ConfigDict(frozen=True)

    result: ExecResult
    artifacts: list[Artifact] = Field(
        description="The workspace's first files in path order (at most 1000), never bytes."
    )
    total_files: int = Field(default=0, description="Every file in the workspace, counted.")
    total_bytes: int = Field(default=0, description="Their sizes, summed.")
    ended: str | None = Field(
        default=None,
        description="Why the session ended early (the script called os._exit, timed out, "
        "left no memory...); the artifacts are then empty unless the workspace outlived it.",
    )

    @property
    def manifest(self) -> Manifest:
        """The listing with its totals (``truncated``, ``summary()``)."""
        return Manifest(
            files=self.artifacts, total_files=self.total_files, total_bytes=self.total_bytes
        )


async def run_script_async(
    source: str | bytes,
    *,
    spec: SandboxSpec | Mapping[str, Any] | None = None,
    files: Mapping[str, bytes | str] | None = None,
    args: tuple[str, ...] = (),
) -> ScriptRun:
    """Upload ``files`` and the script, run it as ``__main__``, list the workspace, tear down.
    ``source`` may be bytes (compiled as Python compiles a file: a PEP 263 cookie counts)."""
    if not isinstance(source, str | bytes):
        raise ConfigError(f"source must be code (str or bytes), not {type(source).__name__}")
    if files is not None and not isinstance(files, Mapping):
        raise ConfigError(f"files must be a {{name: content}} mapping, not {type(files).__name__}")
    async with create_sandbox(coerce_spec(spec)) as sandbox:
        await sandbox.upload({**(files or {}), SCRIPT_NAME: source})
        result = await sandbox.exec_file(SCRIPT_NAME, args=args)
        ended = sandbox.ended  # the script (or a deadline) ended the session
        try:
            manifest = await sandbox.manifest()  # a jupyter workspace outlives its kernel
        except SandboxClosedError as exc:
            return ScriptRun(result=result, artifacts=[], ended=ended or str(exc))
    return ScriptRun(
        result=result,
        artifacts=manifest.files,
        total_files=manifest.total_files,
        total_bytes=manifest.total_bytes,
        ended=ended,
    )


def run_script(
    source: str | bytes | Path,
    *,
    spec: SandboxSpec | Mapping[str, Any] | None = None,
    files: Mapping[str, bytes | str] | None = None,
    args: tuple[str, ...] = (),
) -> ScriptRun:
    """Synchronous ``run_script_async``; ``source`` may be code or a path to a script."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("run_script() was called inside an event loop; use run_script_async")
    code = _read_script(source) if isinstance(source, os.PathLike) else source
    return anyio.run(lambda: run_script_async(code, spec=spec, files=files, args=args))


def _read_script(path: Path) -> bytes:
    """A script's bytes, if it is a regular file of a sensible size (never a fifo or device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"cannot read the script {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the script {path} is not a regular file")
        if info.st_size > MAX_SCRIPT_BYTES:
            raise ConfigError(
                f"the script {path} has {info.st_size} bytes; scripts hold at most "
                f"{MAX_SCRIPT_BYTES} (pass data as files instead)"
            )
        return handle.read(MAX_SCRIPT_BYTES + 1)
