"""Run one script in a fresh sandbox: the smallest useful thing execloop does.

``run_script`` is the one synchronous entry point; it refuses to run inside an event loop
(use ``await run_script_async(...)`` there) instead of silently nesting loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import anyio
from pydantic import BaseModel, ConfigDict

from execloop.errors import ConfigError
from execloop.sandboxes import Artifact, ExecResult, SandboxSpec, create_sandbox

__all__ = ["ScriptRun", "run_script", "run_script_async"]

SCRIPT_NAME = "main.py"


class ScriptRun(BaseModel):
    """What one script run produced: its result and a manifest of the workspace."""

    model_config = ConfigDict(frozen=True)

    result: ExecResult
    artifacts: list[Artifact]


async def run_script_async(
    source: str | bytes,
    *,
    spec: SandboxSpec | None = None,
    files: Mapping[str, bytes | str] | None = None,
    args: tuple[str, ...] = (),
) -> ScriptRun:
    """Upload ``files`` and the script, run it as ``__main__``, list the workspace, tear down."""
    async with create_sandbox(spec) as sandbox:
        await sandbox.upload({**(files or {}), SCRIPT_NAME: source})
        result = await sandbox.exec_file(SCRIPT_NAME, args=args)
        artifacts = [] if result.exit_code is None else await sandbox.artifacts()
    return ScriptRun(result=result, artifacts=artifacts)


def run_script(
    source: str | bytes | Path,
    *,
    spec: SandboxSpec | None = None,
    files: Mapping[str, bytes | str] | None = None,
    args: tuple[str, ...] = (),
) -> ScriptRun:
    """Synchronous ``run_script_async``; ``source`` may be code or a path to a script (sent
    as its bytes, so Python in the sandbox decodes it as it would any file: PEP 263)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("run_script() was called inside an event loop; use run_script_async")
    code = source.read_bytes() if isinstance(source, Path) else source
    return anyio.run(lambda: run_script_async(code, spec=spec, files=files, args=args))
