"""A sandbox handle that forwards every call to another sandbox, obtained when it starts.

What wraps a backend (a warm pool's lease, a gate bounding how many sandboxes live) subclasses
``DelegatingSandbox`` and says only how the inner sandbox is obtained (``start``) and given back
(``close``); every call of the contract goes to ``inner`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from execloop.errors import SandboxClosedError
from execloop.sandboxes.base import (
    DEFAULT_MANIFEST_LIMIT,
    Capability,
    ExecResult,
    Manifest,
    Sandbox,
)
from execloop.sandboxes.streaming import OnOutput

__all__ = ["DelegatingSandbox"]


class DelegatingSandbox(Sandbox):
    """Forwards the contract to ``_inner``, which a subclass's ``start`` sets."""

    _inner: Sandbox | None = None

    @property
    def inner(self) -> Sandbox:
        if self._inner is None:
            raise SandboxClosedError("the sandbox is not started; use `async with`")
        return self._inner

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.inner.capabilities

    @property
    def control_dir(self) -> Path | None:
        return None if self._inner is None else self._inner.control_dir

    @property
    def control_owner(self) -> tuple[int, int] | None:
        return None if self._inner is None else self._inner.control_owner

    @property
    def ended(self) -> str | None:
        return None if self._inner is None else self._inner.ended

    async def exec(
        self, code: str, *, timeout: float | None = None, on_output: OnOutput | None = None
    ) -> ExecResult:
        return await self.inner.exec(code, timeout=timeout, on_output=on_output)

    async def exec_file(
        self,
        path: str,
        *,
        args: Sequence[str] = (),
        timeout: float | None = None,
        on_output: OnOutput | None = None,
    ) -> ExecResult:
        return await self.inner.exec_file(path, args=args, timeout=timeout, on_output=on_output)

    async def upload_tar(self, archive: bytes, dest: str = ".") -> None:
        await self.inner.upload_tar(archive, dest)

    async def _upload_path(self, source: Path, dest: str) -> None:
        await self.inner._upload_path(source, dest)  # streamed by the backend

    async def download_tar(self, path: str) -> bytes:
        return await self.inner.download_tar(path)

    async def download(self, path: str, dest: Path) -> list[Path]:
        return await self.inner.download(path, dest)

    async def read_file(self, path: str) -> bytes:
        return await self.inner.read_file(path)

    async def manifest(self, path: str = ".", *, limit: int = DEFAULT_MANIFEST_LIMIT) -> Manifest:
        return await self.inner.manifest(path, limit=limit)
