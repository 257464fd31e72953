"""The Sandbox contract every backend implements.

A sandbox is a stateful session: consecutive ``exec()`` calls share variables. A failing user
script is data (``ExecResult.exit_reason``), never an exception; only infrastructure failures
raise (subclasses of ``execloop.errors.SandboxError``).
"""

from __future__ import annotations

import abc
import enum
import math
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import BaseModel, ConfigDict

from execloop.errors import ConfigError, SandboxClosedError
from execloop.sandboxes import transfer
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.streaming import OnOutput

__all__ = [
    "Artifact",
    "Capability",
    "DEFAULT_MANIFEST_LIMIT",
    "ExecResult",
    "ExitReason",
    "GUEST_CONTROL_DIR",
    "MAX_MANIFEST_LIMIT",
    "Manifest",
    "RestartHook",
    "Sandbox",
    "check_backend",
    "check_exec_args",
    "check_manifest_limit",
]

DEFAULT_MANIFEST_LIMIT = 1000
MAX_MANIFEST_LIMIT = 100_000
# Where the code in a sandbox sees ``Sandbox.control_dir`` (sockets, generated modules).
GUEST_CONTROL_DIR = "/run/execloop"

RestartHook = Callable[[], Awaitable[None]]


class Capability(enum.StrEnum):
    """What a sandbox offers beyond the contract's calls; runtime/ asks these, never a name."""

    STATEFUL = "stateful"  # consecutive exec() calls share variables
    TOOLS = "tools"  # its code can import from and connect to GUEST_CONTROL_DIR (tool bridge)
    GPU = "gpu"  # spec.gpus is honoured
    RESTART = "restart"  # restart() gives a fresh interpreter on the same workspace
    BINARY_STDOUT = "binary_stdout"  # sys.stdout.buffer takes bytes (restricted has no sys)
    RICH_OUTPUT = "rich_output"  # display outputs (PNG, HTML...) are saved under outputs/
    STREAMING = "streaming"  # on_output sees stdout/stderr while the code runs, not at its end


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


class Manifest(BaseModel):
    """The regular files under a path, bounded: the first ``limit`` (in path order) listed with
    size and sha256; every file counted and its size summed, but not hashed past the limit."""

    model_config = ConfigDict(frozen=True)

    files: list[Artifact]
    total_files: int
    total_bytes: int

    @property
    def truncated(self) -> bool:
        """Whether files exist that ``files`` does not list."""
        return self.total_files > len(self.files)

    def summary(self) -> str:
        """One line, e.g. ``100000 files, 1.2 MiB (first 1000 listed)``."""
        size = _human_bytes(self.total_bytes)
        noun = "file" if self.total_files == 1 else "files"
        listed = f" (first {len(self.files)} listed)" if self.truncated else ""
        return f"{self.total_files} {noun}, {size}{listed}"


def _human_bytes(count: int) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, exponent = float(count), 0
    while value >= 1024 and exponent < len(units) - 1:
        value, exponent = value / 1024, exponent + 1
    return f"{count} B" if exponent == 0 else f"{value:.1f} {units[exponent]}"


def check_exec_args(
    *, timeout: object, code: object = "", path: object = None, args: object = ()
) -> float | None:
    """The exec's timeout if the arguments are valid, else ``ConfigError`` saying which is
    not (checked before anything happens: a bad timeout must not kill the session)."""
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ConfigError(
                f"timeout must be a positive, finite number of seconds, not {timeout!r}; "
                "leave it out for the spec's timeout_s"
            )
    if not isinstance(code, str):
        raise ConfigError(f"code must be a str, not {type(code).__name__}")
    if path is not None:
        transfer.check_name(path, what="script path")
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigError(f"args must be a sequence of str, not {type(args).__name__}")
    bad = [arg for arg in args if not isinstance(arg, str)]
    if bad:
        raise ConfigError(f"args must be str; got {type(bad[0]).__name__} {bad[0]!r}")
    return None if timeout is None else float(timeout)


def check_backend(spec: SandboxSpec, backend: str, sandbox_class: str) -> None:
    """Refuse a spec naming another backend: its fields were chosen for that one."""
    if spec.backend != backend:
        raise ConfigError(
            f"{sandbox_class} runs backend={backend!r}, but the spec names "
            f"backend={spec.backend!r}; use create_sandbox(spec) or "
            f"SandboxSpec(backend={backend!r})"
        )


def check_manifest_limit(limit: object) -> int:
    """``limit`` if it is a valid manifest limit, else ``ConfigError`` saying what is."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ConfigError(f"manifest limit must be an integer, not {type(limit).__name__}")
    if not 0 <= limit <= MAX_MANIFEST_LIMIT:
        raise ConfigError(
            f"manifest limit {limit} is out of range: use 0 to {MAX_MANIFEST_LIMIT} "
            "(files past it are counted, not listed)"
        )
    return limit


class Sandbox(abc.ABC):
    """Async, stateful execution session. Use as ``async with backend(spec) as sandbox:``."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        # Marks everything the session starts (container label, process command line), so
        # that leaks can be found and reaped.
        self.session_id = uuid.uuid4().hex[:12]
        self._closed = False
        self._restart_hooks: list[RestartHook] = []

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Bring the sandbox up; raises ``SandboxStartError`` if it cannot."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Tear everything down. Idempotent; never leaves a container or process behind."""

    def on_restart(self, hook: RestartHook) -> Callable[[], None]:
        """Have ``hook()`` awaited after each ``restart()`` (``Capability.RESTART``): the fresh
        interpreter has none of the session's setup, and may have a new ``control_dir`` (the
        tool bridge re-attaches so). Returns the function that removes the hook again."""
        self._restart_hooks.append(hook)

        def remove() -> None:
            if hook in self._restart_hooks:
                self._restart_hooks.remove(hook)

        return remove

    async def _restarted(self) -> None:
        """A backend's ``restart()`` calls this once its fresh interpreter is up."""
        for hook in list(self._restart_hooks):
            await hook()

    async def warm(self) -> None:
        """Rehearse a call once, leaving no trace, so that the first real one costs what later
        ones do (a pool does this before it hands a started sandbox out)."""
        return None  # nothing to rehearse unless a backend says otherwise

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
    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        """Run ``code`` in the session's namespace; ``timeout`` defaults to ``spec.timeout_s``.

        ``on_output(stream, text)`` (``stream`` is ``"stdout"`` or ``"stderr"``) sees the
        output as it happens where the sandbox offers ``Capability.STREAMING`` (else once, as
        the exec ends): at most ``spec.max_output_bytes`` per stream, then delivery stops
        without a word (the ``ExecResult``, unchanged by streaming, says what was cut)."""

    @abc.abstractmethod
    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        """Run a workspace file as ``__main__`` (with ``sys.argv = [path, *args]``); its
        output goes to ``on_output`` as ``exec`` says."""

    # -- files -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        """Extract a tar archive under ``dest`` in the workspace (entries are checked first)."""

    @abc.abstractmethod
    async def download_tar(self, path: str) -> bytes:
        """A tar archive of ``path`` (file or directory) in the workspace."""

    @abc.abstractmethod
    async def manifest(self, path: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        """The regular files under ``path`` (a file or folder; links never followed), bounded:
        the first ``limit`` in path order with size and sha256, all of them counted. An invalid
        ``limit`` raises ``ConfigError`` (``check_manifest_limit``)."""

    async def artifacts(self, path: str = ".") -> list[Artifact]:
        """``manifest(path).files``: at most ``DEFAULT_MANIFEST_LIMIT`` files (``manifest()``
        says how many there are in all)."""
        return (await self.manifest(path)).files

    async def upload(self, source: Path | Mapping[str, bytes | str], dest: str = ".") -> None:
        """Upload a host file or folder (streamed; links and special files inside a folder are
        skipped, never followed), or a ``{name: content}`` mapping (bytes or str values).
        An upload that cannot fit in the workspace is refused before it starts."""
        transfer.check_name(dest, what="upload destination")
        if isinstance(source, os.PathLike):
            await self._upload_path(Path(source), dest)
        elif isinstance(source, Mapping):
            await self.upload_tar(transfer.tar_from_mapping(source), dest)
        else:
            hint = " (wrap a host path in Path(...))" if isinstance(source, str) else ""
            raise ConfigError(
                "upload() takes a pathlib.Path or a {name: content} mapping, not "
                f"{type(source).__name__}{hint}"
            )

    async def _upload_path(self, source: Path, dest: str) -> None:
        """Upload a host file or folder. Backends stream it; this default (for test doubles)
        builds the archive in memory."""
        await self.upload_tar(transfer.tar_from_path(source), dest)

    async def download(self, path: str, dest: Path) -> list[Path]:
        """Copy ``path`` out of the workspace into the host directory ``dest``; the files
        written. Backends stream it; this default goes through ``download_tar``."""
        return transfer.extract_tar(await self.download_tar(path), dest)

    async def read_file(self, path: str) -> bytes:
        """The bytes of one workspace file."""
        return transfer.single_file(await self.download_tar(path), path)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this sandbox offers (``Capability``); a backend adds to the stateful default."""
        return frozenset({Capability.STATEFUL})

    @property
    def control_dir(self) -> Path | None:
        """The host directory the running sandbox sees at ``GUEST_CONTROL_DIR`` (where the tool
        bridge puts its socket and module); None before start, after close, or without one."""
        return None

    @property
    def control_owner(self) -> tuple[int, int] | None:
        """The host uid/gid the sandbox's code connects as, when execloop (as root) must hand
        a socket in ``control_dir`` over to it; None when it is this process's own user."""
        return None

    @property
    def ended(self) -> str | None:
        """Why this session can run no more code although it was not closed (a deadline, a
        kill, or the script itself: ``os._exit``, no memory or descriptor left), else None."""
        return None

    def _ensure_open(self) -> None:
        if self._closed:
            raise SandboxClosedError(
                f"{type(self).__name__} is closed; start a new sandbox to run more code",
                sandbox_id=self.session_id,
            )
