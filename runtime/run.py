"""Run one script in a fresh sandbox: the smallest useful thing execloop does.

``run_script`` is the one synchronous entry point; it refuses to run inside an event loop
(use ``await run_script_async(...)`` there) instead of silently nesting loops. Whatever the
script does is data: a script that ends its own session (``os._exit``, no memory or file
descriptor left for the sandbox) still gives a ``ScriptRun``, whose ``ended`` says why.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from execloop.errors import ConfigError, SandboxClosedError
from execloop.runtime import bounds
from execloop.runtime.host_files import read_script
from execloop.runtime.host_workspace import HostWorkspace
from execloop.runtime.inputs import SCRIPT_NAME, Inputs
from execloop.sandboxes import Artifact, ExecResult, Manifest, Sandbox, create_sandbox
from execloop.sandboxes.progress import OnProgress, ProgressReader, check_on_progress
from execloop.sandboxes.spec import SandboxSpec, coerce_spec
from execloop.sandboxes.streaming import OnOutput

__all__ = ["ScriptRun", "run_script", "run_script_async"]


class ScriptRun(BaseModel):
    """What one script run produced: its result and a bounded manifest of the workspace."""

    model_config = ConfigDict(frozen=True)

    result: ExecResult
    artifacts: list[Artifact] = Field(
        description=f"The workspace's first files in path order (at most "
        f"{bounds.ARTIFACTS_LISTED}), never their bytes."
    )
    artifacts_total_files: int = Field(default=0, description="Every file, counted.")
    artifacts_total_bytes: int = Field(default=0, description="Their sizes, summed.")
    ended: str | None = Field(
        default=None,
        description="Why the session ended early (the script called os._exit, timed out, "
        "left no memory...); the artifacts are then empty unless the workspace outlived it.",
    )

    @property
    def manifest(self) -> Manifest:
        """The listing with its totals (``truncated``, ``summary()``)."""
        return Manifest(
            files=self.artifacts,
            total_files=self.artifacts_total_files,
            total_bytes=self.artifacts_total_bytes,
        )


async def run_script_async(
    source: str | bytes,
    *,
    spec: SandboxSpec | Mapping[str, Any] | None = None,
    files: Mapping[str, bytes | str] | None = None,
    inputs: Sequence[Path] = (),
    args: tuple[str, ...] = (),
    on_exec: Callable[[ExecResult], None] | None = None,
    on_output: OnOutput | None = None,
    on_progress: OnProgress | None = None,
    out_dir: Path | None = None,
) -> ScriptRun:
    """Upload ``inputs`` (host files and directories, laid out by ``Inputs``), ``files`` and
    the script as ``main.py``, run it as ``__main__``, list the workspace, tear down.

    ``source`` may be bytes (compiled as Python compiles a file: a PEP 263 cookie counts).
    Nothing is overwritten: ``main.py`` is reserved, and in a host workspace
    (``spec.workspace_dir``, locked for the run) existing files are never replaced.
    ``on_output(stream, text)`` sees the script's output as it prints (``Sandbox.exec``);
    ``on_progress(event)`` each ``ProgressEvent`` it reports (``execloop_progress.report``;
    ``on_output`` then sees its output without those lines);
    ``on_exec`` sees the result as soon as the script ends (before the listing and teardown);
    ``out_dir`` (a new or empty host directory) receives the workspace, script included."""
    if not isinstance(source, str | bytes):
        raise ConfigError(f"source must be code (str or bytes), not {type(source).__name__}")
    if files is not None and not isinstance(files, Mapping):
        raise ConfigError(f"files must be a {{name: content}} mapping, not {type(files).__name__}")
    spec = coerce_spec(spec)
    if spec.checkpoint_size is not None:  # a one-off run has no attempts to resume
        raise ConfigError(
            "checkpoint_size asks for a task's checkpoint directory, which a single run does "
            "not have: use a task (SubAgent, the broker, `execloop task`), or mount a host "
            "directory with checkpoint_dir"
        )
    on_progress = check_on_progress(on_progress)
    script = source.encode() if isinstance(source, str) else source
    extra = {name: _content(name, content) for name, content in (files or {}).items()}
    collected = Inputs.collect(inputs)
    for name in extra:
        top = PurePosixPath(name).parts[0] if PurePosixPath(name).parts else name
        if top == SCRIPT_NAME or top in collected.names:
            raise ConfigError(
                f"files entry {name!r} collides with the script ({SCRIPT_NAME}) or an input "
                f"of the same name; rename it"
            )
    collected.check_fits(spec, extra_bytes=len(script) + sum(map(len, extra.values())))
    async with AsyncExitStack() as stack:
        if spec.workspace_dir is not None:
            claim = stack.enter_context(HostWorkspace.claim(spec.workspace_dir))
            claim.reserve(SCRIPT_NAME)
            for name, content in extra.items():
                claim.refuse_overwrite(name, content)
        staged = await stack.enter_async_context(collected.staged())
        if spec.workspace_dir is not None:
            claim.refuse_overwriting_inputs(collected, staged.folder)
        sandbox = await stack.enter_async_context(create_sandbox(spec))
        await staged.upload(sandbox)
        await sandbox.upload({**extra, SCRIPT_NAME: script})
        reader = None
        if on_progress is not None:  # progress lines are read from the streamed output
            reader = ProgressReader(on_progress, on_output=on_output)
        result = await sandbox.exec_file(
            SCRIPT_NAME, args=args, on_output=on_output if reader is None else reader.feed
        )
        if reader is not None:
            reader.close()
        if on_exec is not None:
            on_exec(result)
        ended = sandbox.ended  # the script (or a deadline) ended the session
        try:
            manifest = await sandbox.manifest(limit=bounds.ARTIFACTS_LISTED)
            if out_dir is not None:
                await _download_workspace(sandbox, out_dir)
        except SandboxClosedError as exc:  # a jupyter workspace outlives its kernel; others not
            return ScriptRun(result=result, artifacts=[], ended=ended or exc.ended or str(exc))
    return ScriptRun(
        result=result,
        artifacts=manifest.files,
        artifacts_total_files=manifest.total_files,
        artifacts_total_bytes=manifest.total_bytes,
        ended=ended,
    )


async def _download_workspace(sandbox: Sandbox, out_dir: Path) -> None:
    """The workspace into ``out_dir``, which must be new or empty: nothing is overwritten."""
    await anyio.to_thread.run_sync(_empty_dir, out_dir)
    await sandbox.download(".", out_dir)


def _empty_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise ConfigError(f"{path} is not empty; execloop never overwrites files there")


def _content(name: str, content: object) -> bytes:
    if isinstance(content, str):
        return content.encode()
    if isinstance(content, bytes):
        return content
    raise ConfigError(f"files[{name!r}] must be bytes or str, not {type(content).__name__}")


def run_script(
    source: str | bytes | Path,
    *,
    spec: SandboxSpec | Mapping[str, Any] | None = None,
    files: Mapping[str, bytes | str] | None = None,
    inputs: Sequence[Path] = (),
    args: tuple[str, ...] = (),
    on_exec: Callable[[ExecResult], None] | None = None,
    on_output: OnOutput | None = None,
    on_progress: OnProgress | None = None,
    out_dir: Path | None = None,
) -> ScriptRun:
    """Synchronous ``run_script_async``; ``source`` may be code or a path to a script (sent
    as its bytes, so Python in the sandbox decodes it as it would any file: PEP 263)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("run_script() was called inside an event loop; use run_script_async")
    code = read_script(Path(source)) if isinstance(source, os.PathLike) else source
    return anyio.run(
        lambda: run_script_async(
            code,
            spec=spec,
            files=files,
            inputs=inputs,
            args=args,
            on_exec=on_exec,
            on_output=on_output,
            on_progress=on_progress,
            out_dir=out_dir,
        )
    )
