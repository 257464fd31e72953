"""The Sandbox contract every backend implements.

A sandbox is a stateful session: consecutive ``exec()`` calls share variables. A failing user
script is data (``ExecResult.exit_reason``), never an exception; only infrastructure failures
raise (subclasses of ``execloop.errors.SandboxError``).
"""

from __future__ import annotations

import abc
import enum
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import BaseModel, ConfigDict

from execloop.errors import SandboxClosedError
from execloop.sandboxes import transfer
from execloop.sandboxes.spec import SandboxSpec

__all__ = ["Artifact", "ExecResult", "ExitReason", "Sandbox"]


class ExitReason(enum.StrEnum):
    """Why an execution ended. Host-side reasons (timeout, oom, killed) are decided by the host."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    OOM = "oom"
    KILLED = "killed"
    OUTPUT_LIMIT = "output_limit"


class ExecResult(BaseModel):
    """The outcome of one execution. ``stdout``/``stderr`` are bounded (head + tail)."""

    model_config = ConfigDict(frozen=True)

    exit_code: int | None
    exit_reason: ExitReason
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_s: float
    peak_memory_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_reason is ExitReason.OK


class Artifact(BaseModel):
    """A file the sandbox produced: described, never carried (no bytes)."""

    model_config = ConfigDict(frozen=True)

    path: str
    size_bytes: int
    sha256: str


class Sandbox(abc.ABC):
    """Async, stateful execution session. Use as ``async with backend(spec) as sandbox:``."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        # Marks everything the session starts (container label, process command line), so
        # that leaks can be found and reaped.
        self.session_id = uuid.uuid4().hex[:12]
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Bring the sandbox up; raises ``SandboxStartError`` if it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Tear everything down. Idempotent; never leaves a container or process behind."""

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- execution -------------------------------------------------------------------------
    @abc.abstractmethod
    async def exec(self, code: str, *, timeout: float | None = None) -> ExecResult:
        """Run ``code`` in the session's namespace; ``timeout`` defaults to ``spec.timeout_s``."""

    @abc.abstractmethod
    async def exec_file(
        self, path: str, *, args: Sequence[str] = (), timeout: float | None = None
    ) -> ExecResult:
        """Run a workspace file as ``__main__`` (with ``sys.argv = [path, *args]``)."""

    # -- files -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        """Extract a tar archive under ``dest`` in the workspace (entries are checked first)."""

    @abc.abstractmethod
    async def download_tar(self, path: str) -> bytes:
        """A tar archive of ``path`` (file or directory) in the workspace."""

    @abc.abstractmethod
    async def artifacts(self, path: str = ".") -> list[Artifact]:
        """Manifest (path, size, sha256) of every regular file under ``path``."""

    async def upload(self, source: Path | Mapping[str, bytes | str], dest: str = ".") -> None:
        """Upload a host file or directory, or a ``{name: content}`` mapping."""
        if isinstance(source, Path):
            archive = transfer.tar_from_path(source)
        else:
            archive = transfer.tar_from_mapping(source)
        await self.upload_tar(archive, dest)

    async def download(self, path: str, dest: Path) -> list[Path]:
        """Copy ``path`` out of the workspace into the host directory ``dest``."""
        return transfer.extract_tar(await self.download_tar(path), dest)

    async def read_file(self, path: str) -> bytes:
        """The bytes of one workspace file."""
        return transfer.single_file(await self.download_tar(path), path)

    @property
    def closed(self) -> bool:
        return self._closed

    def _ensure_open(self) -> None:
        if self._closed:
            raise SandboxClosedError(
                f"{type(self).__name__} is closed; start a new sandbox to run more code"
            )
