"""``FakeSandbox``: the Sandbox contract in memory, for tests of code that drives sandboxes.

The workspace is a dict of bytes (``sandbox.files``). Nothing is executed: ``exec`` and
``exec_file`` call the ``handler`` given, which sees the code and the workspace and returns what
the run produced; without one, every run is ``ok`` with no output. Transfers, manifests and
closing behave as the contract says (paths checked, a missing path is ``TransferError``, use
after ``close`` is ``SandboxClosedError``), and every download is recorded in ``downloads`` so
tests can count what was fetched.

    async def handler(run: FakeRun) -> ExecResult | str | None:
        run.files["result.json"] = b'{"rows": 3}'   # what the "script" wrote
        return "done\\n"                            # stdout of a run that succeeded

    async with FakeSandbox(handler=handler) as sandbox: ...
"""

from __future__ import annotations

import hashlib
import inspect
import io
import posixpath
import tarfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from execloop.errors import SandboxClosedError, TransferError
from execloop.sandboxes import transfer
from execloop.sandboxes.base import (
    DEFAULT_MANIFEST_LIMIT,
    Artifact,
    ExecResult,
    ExitReason,
    Manifest,
    Sandbox,
    check_exec_args,
    check_manifest_limit,
)
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.streaming import OnOutput, OutputStream, check_on_output

__all__ = ["FakeBackend", "FakeRun", "FakeSandbox", "Handler"]


@dataclass
class FakeRun:
    """One ``exec``/``exec_file`` call as the handler sees it. ``files`` is the sandbox's live
    workspace: what the handler writes there, the "script" wrote."""

    code: str
    path: str | None
    args: tuple[str, ...]
    timeout: float
    files: dict[str, bytes]
    sandbox: FakeSandbox


# The handler returns the run's ExecResult, or its stdout (a run that succeeded), or None (a
# run that succeeded silently); it may be a plain or an async function.
Handler = Callable[[FakeRun], ExecResult | str | Awaitable[ExecResult | str | None] | None]


class FakeSandbox(Sandbox):
    """An in-memory ``Sandbox`` (see the module docstring)."""

    backend_name = "fake"

    def __init__(
        self,
        spec: SandboxSpec | None = None,
        *,
        handler: Handler | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        super().__init__(spec or SandboxSpec())
        self.handler = handler
        self.files: dict[str, bytes] = dict(files or {})
        self.runs: list[FakeRun] = []  # every exec and exec_file, in order
        self.downloads: list[str] = []  # the workspace path of every download, in order
        self.started = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._ensure_open()
        self.started = True

    async def close(self) -> None:
        self._closed = True

    def _ensure_usable(self) -> None:
        self._ensure_open()
        if not self.started:
            raise SandboxClosedError(
                "the sandbox was never started; use `async with` or start()",
                sandbox_id=self.session_id,
            )

    # -- execution -----------------------------------------------------------------------
    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        limit = check_exec_args(timeout=timeout, code=code)
        on_output = check_on_output(on_output)
        self._ensure_usable()
        return self._deliver(await self._run(code, path=None, args=(), timeout=limit), on_output)

    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        limit = check_exec_args(timeout=timeout, path=path, args=args)
        on_output = check_on_output(on_output)
        self._ensure_usable()
        name = self._inside(path)
        if name not in self.files:
            return ExecResult(
                exit_code=2,
                exit_reason=ExitReason.ERROR,
                stderr=f"python: can't open file {path!r}: [Errno 2] No such file or directory\n",
                duration_s=0.0,
            )
        code = self.files[name].decode("utf-8", "replace")
        result = await self._run(code, path=name, args=tuple(args), timeout=limit)
        return self._deliver(result, on_output)

    def _deliver(self, result: ExecResult, on_output: OnOutput | None) -> ExecResult:
        """A fake runs nothing while it waits: its output reaches ``on_output`` at the end
        (bounded as the contract says), so it does not offer ``Capability.STREAMING``."""
        if on_output is not None:
            stream = OutputStream(on_output, limit=self.spec.max_output_bytes)
            stream.feed("stdout", result.stdout.encode())
            stream.feed("stderr", result.stderr.encode())
            stream.close()
        return result

    async def _run(
        self, code: str, *, path: str | None, args: tuple[str, ...], timeout: float | None
    ) -> ExecResult:
        run = FakeRun(
            code=code,
            path=path,
            args=args,
            timeout=self.spec.timeout_s if timeout is None else timeout,
            files=self.files,
            sandbox=self,
        )
        self.runs.append(run)
        outcome = None if self.handler is None else self.handler(run)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, ExecResult):
            return outcome
        return ExecResult(
            exit_code=0, exit_reason=ExitReason.OK, stdout=outcome or "", duration_s=0.0
        )

    # -- files ---------------------------------------------------------------------------
    def _inside(self, path: str) -> str:
        """``path`` as a workspace key ("" for the workspace itself), or ``TransferError``."""
        transfer.check_name(path)
        normal = posixpath.normpath(path)
        if normal.startswith("/") or normal == ".." or normal.startswith("../"):
            raise TransferError(f"{path!r} is outside the workspace", path=path)
        return "" if normal == "." else normal

    def _under(self, path: str) -> dict[str, bytes]:
        """The files at or under workspace path ``path`` (keys relative to the workspace)."""
        root = self._inside(path)
        if root in self.files:
            return {root: self.files[root]}
        prefix = root + "/" if root else ""
        found = {name: data for name, data in self.files.items() if name.startswith(prefix)}
        if not found and root:
            raise TransferError(f"{path} does not exist", path=path, sandbox_id=self.session_id)
        return found

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        self._ensure_usable()
        base = self._inside(dest)
        members = transfer.check_archive(archive)
        incoming: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for member in members:
                if not member.isfile():
                    continue
                name = self._inside(posixpath.join(base or ".", member.name))
                source = tar.extractfile(member)
                incoming[name] = source.read() if source is not None else b""
        kept = {k: v for k, v in self.files.items() if k not in incoming}
        needed = sum(map(len, kept.values())) + sum(map(len, incoming.values()))
        if needed > self.spec.workspace_size:  # refused before anything is written
            raise TransferError(
                f"the upload needs {needed} bytes but the workspace holds "
                f"{self.spec.workspace_size}; raise workspace_size in the sandbox spec",
                sandbox_id=self.session_id,
            )
        self.files.update(incoming)

    async def download_tar(self, path: str) -> bytes:
        self._ensure_usable()
        found = self._under(path)
        self.downloads.append(self._inside(path) or ".")
        root = self._inside(path)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:") as tar:
            for name in sorted(found):
                # as the helper names them: a file by its name, a folder's files relative to it
                arcname = posixpath.basename(name) if name == root else name[len(root) :]
                info = tarfile.TarInfo(arcname.lstrip("/"))
                info.size = len(found[name])
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(found[name]))
        return buffer.getvalue()

    async def manifest(self, path: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        limit = check_manifest_limit(limit)
        self._ensure_usable()
        found = self._under(path)
        names = sorted(found)
        listed = [
            Artifact(
                path=name,
                size_bytes=len(found[name]),
                sha256=hashlib.sha256(found[name]).hexdigest(),
            )
            for name, data in ((name, found[name]) for name in names[:limit])
        ]
        total = sum(len(data) for data in found.values())
        return Manifest(files=listed, total_files=len(names), total_bytes=total)

    def fetched(self, path: str) -> int:
        """How many downloads named workspace path ``path`` (``read_file`` included)."""
        return self.downloads.count(self._inside(path) or ".")


class FakeBackend:
    """A ``sandbox_factory`` for the loop and the broker: each call makes a ``FakeSandbox``
    with the shared ``handler`` and remembers it in ``sandboxes``."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.sandboxes: list[FakeSandbox] = []

    def __call__(self, spec: SandboxSpec) -> FakeSandbox:
        sandbox = FakeSandbox(spec, handler=self.handler)
        self.sandboxes.append(sandbox)
        return sandbox

    def fetched(self, path: str) -> int:
        """Downloads of ``path`` over every sandbox made."""
        return sum(sandbox.fetched(path) for sandbox in self.sandboxes)
