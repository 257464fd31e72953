"""An execloop backend for the OpenAI Agents SDK's sandbox agents (``agents.sandbox``, beta in
openai-agents 0.24): ``RunConfig(sandbox=SandboxRunConfig(client=ExecloopSandboxClient(),
options=ExecloopSandboxClientOptions(spec={...})))`` gives a ``SandboxAgent``'s shell and file
tools an execloop sandbox.

Each command is one ``Sandbox.exec`` of a small Python program that runs the command's argv
in the workspace (``/workspace``, the manifest's default root) and exits with its status, so
execloop's limits apply per command. A timeout ends an execloop sandbox with its files: the
SDK gets ``ExecTimeoutError``, and the next command runs in a new sandbox whose stderr says the
earlier state is gone. Files move with execloop's tar transfers. This is a shell backend: it
does not give execloop's Python-session semantics (use ``openai_agents.run_python`` for that).
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field

from execloop.errors import TransferError
from execloop.runtime.executors.session import SandboxSession, exit_code, missing_extra
from execloop.sandboxes import ExitReason, Sandbox

try:
    from agents.sandbox.errors import ExecTimeoutError, WorkspaceReadNotFoundError
    from agents.sandbox.manifest import Manifest
    from agents.sandbox.session.base_sandbox_session import BaseSandboxSession
    from agents.sandbox.session.sandbox_client import BaseSandboxClient, BaseSandboxClientOptions
    from agents.sandbox.session.sandbox_session import SandboxSession as AgentsSandboxSession
    from agents.sandbox.session.sandbox_session_state import SandboxSessionState
    from agents.sandbox.snapshot import SnapshotBase, SnapshotSpec, resolve_snapshot
    from agents.sandbox.types import ExecResult, User
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="openai-agents") from exc

__all__ = [
    "ExecloopSandboxClient",
    "ExecloopSandboxClientOptions",
    "ExecloopSandboxSession",
    "ExecloopSandboxSessionState",
]

_RUN_ARGV = """\
import subprocess as _subprocess, sys as _sys
_done = _subprocess.run({argv!r}, capture_output=True, cwd={cwd!r})
_sys.stdout.write(_done.stdout.decode("utf-8", "replace"))
_sys.stderr.write(_done.stderr.decode("utf-8", "replace"))
raise SystemExit(_done.returncode if _done.returncode >= 0 else 128 - _done.returncode)
"""


class ExecloopSandboxClientOptions(BaseSandboxClientOptions):
    """Options of one session: ``spec`` holds ``SandboxSpec`` fields (backend, limits)."""

    type: Literal["execloop"] = "execloop"
    spec: dict[str, Any] = Field(default_factory=dict)


class ExecloopSandboxSessionState(SandboxSessionState):
    type: Literal["execloop"] = "execloop"
    spec: dict[str, Any] = Field(default_factory=dict)


class ExecloopSandboxSession(BaseSandboxSession):
    """A sandbox agent's session on one execloop sandbox (started with the session)."""

    state: ExecloopSandboxSessionState

    def __init__(self, *, state: ExecloopSandboxSessionState) -> None:
        self.state = state
        self._session = SandboxSession(spec=state.spec)

    async def _ensure_backend_started(self) -> None:
        await self._session.start()

    async def _shutdown_backend(self) -> None:
        await self._session.aclose()

    async def running(self) -> bool:
        sandbox = self._session.sandbox
        return sandbox is not None and sandbox.ended is None

    async def _exec_internal(
        self, *command: str | Path, timeout: float | None = None
    ) -> ExecResult:
        argv = [str(part) for part in command]
        program = _RUN_ARGV.format(argv=argv, cwd=self.state.manifest.root)
        result, note = await self._session.exec(program, timeout=timeout)
        if result.exit_reason is ExitReason.TIMEOUT:
            raise ExecTimeoutError(command=argv, timeout_s=timeout)
        stderr = f"{note}\n{result.stderr}" if note else result.stderr
        if result.exit_reason not in (ExitReason.OK, ExitReason.ERROR):
            stderr = f"{stderr}\n[execloop: {result.exit_reason.value}]"
        return ExecResult(
            stdout=result.stdout.encode(), stderr=stderr.encode(), exit_code=exit_code(result)
        )

    async def read(self, path: Path, *, user: str | User | None = None) -> io.IOBase:
        try:
            data = await (await self._sandbox()).read_file(self._relative(path))
        except TransferError as exc:
            raise WorkspaceReadNotFoundError(path=path, cause=exc) from exc
        return io.BytesIO(data)

    async def write(self, path: Path, data: io.IOBase, *, user: str | User | None = None) -> None:
        content = data.read()
        payload = content.encode() if isinstance(content, str) else bytes(content)
        await (await self._sandbox()).upload({self._relative(path): payload})

    async def persist_workspace(self) -> io.IOBase:
        return io.BytesIO(await (await self._sandbox()).download_tar("."))

    async def hydrate_workspace(self, data: io.IOBase) -> None:
        await (await self._sandbox()).upload_tar(data.read(), ".")

    async def _sandbox(self) -> Sandbox:
        await self._session.start()
        assert self._session.sandbox is not None
        return self._session.sandbox

    def _relative(self, path: Path | str) -> str:
        """``path`` relative to the workspace root (execloop's transfers check it further)."""
        pure = PurePosixPath(path)
        if pure.is_absolute():
            pure = pure.relative_to(self.state.manifest.root)
        return pure.as_posix()


class ExecloopSandboxClient(BaseSandboxClient[ExecloopSandboxClientOptions]):
    """Creates sandbox-agent sessions on execloop sandboxes."""

    backend_id = "execloop"

    async def create(
        self,
        *,
        snapshot: SnapshotSpec | SnapshotBase | None = None,
        manifest: Manifest | None = None,
        options: ExecloopSandboxClientOptions,
    ) -> AgentsSandboxSession:
        manifest = self._validate_manifest_for_create(manifest or Manifest())
        session_id = uuid.uuid4()
        state = ExecloopSandboxSessionState(
            session_id=session_id,
            manifest=manifest,
            snapshot=resolve_snapshot(snapshot, str(session_id)),
            spec=options.spec,
        )
        return self._wrap_session(ExecloopSandboxSession(state=state))

    async def delete(self, session: AgentsSandboxSession) -> AgentsSandboxSession:
        await session._inner.shutdown()
        return session

    async def resume(self, state: SandboxSessionState) -> AgentsSandboxSession:
        if not isinstance(state, ExecloopSandboxSessionState):
            raise TypeError("ExecloopSandboxClient.resume expects an ExecloopSandboxSessionState")
        return self._wrap_session(ExecloopSandboxSession(state=state))

    def deserialize_session_state(self, payload: dict[str, object]) -> SandboxSessionState:
        return self._deserialize_session_state_payload(payload, ExecloopSandboxSessionState)
