"""A passed ``run_task``'s verified workspace as MCP resources: a listing per task and one
resource per file, read without following links and bounded."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from pydantic import BaseModel, Field

from execloop.runtime import bounds
from execloop.runtime.mcp_state import ServerState, state_of

__all__ = ["ARTIFACTS_URI", "ARTIFACT_READ_LIMIT", "ArtifactList", "add_artifact_resources"]

ARTIFACT_READ_LIMIT = 8 * 1024**2  # bytes one resource read may return
ARTIFACTS_URI = "execloop://tasks/{task_id}/artifacts"


class ArtifactList(BaseModel):
    task_id: str
    files: list[dict[str, Any]] = Field(description="path and size_bytes, in path order.")
    total_files: int
    uri_template: str


def add_artifact_resources(server: MCPServer[Any]) -> None:
    @server.resource(ARTIFACTS_URI, mime_type="application/json")
    async def task_artifacts(task_id: str, ctx: Context[Any, Any]) -> str:
        """The files a passed task left in its verified workspace (read each one at
        execloop://tasks/{task_id}/artifacts/{path})."""
        root = _task_root(state_of(ctx), task_id)
        files = await anyio.to_thread.run_sync(_listing, root)
        listed = [{"path": p, "size_bytes": n} for p, n in files[: bounds.ARTIFACTS_LISTED]]
        return ArtifactList(
            task_id=task_id,
            files=listed,
            total_files=len(files),
            uri_template=ARTIFACTS_URI + "/{+path}",
        ).model_dump_json()

    @server.resource(ARTIFACTS_URI + "/{+path}", mime_type="application/octet-stream")
    async def task_artifact(task_id: str, path: str, ctx: Context[Any, Any]) -> bytes:
        """One file of a passed task's workspace (at most 8 MiB per read)."""
        root = _task_root(state_of(ctx), task_id)
        return await anyio.to_thread.run_sync(_read_bounded, root, path)


def _task_root(state: ServerState, task_id: str) -> Path:
    root = state.artifacts / task_id
    if "/" in task_id or task_id in (".", "..") or not root.is_dir():
        raise ResourceError(
            f"task {task_id!r} has no kept files (only a passed run_task of this server keeps "
            "its workspace)"
        )
    return root


def _listing(root: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(root):  # links are not followed into
        dirs.sort()
        for name in sorted(files):
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                found.append((os.path.relpath(os.path.join(folder, name), root), info.st_size))
    return found


def _read_bounded(root: Path, path: str) -> bytes:
    """A regular file under ``root``, opened one component at a time without following links,
    refused past ``ARTIFACT_READ_LIMIT``."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise ResourceError(f"artifact path {path!r} must be relative, inside the workspace")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            except OSError as exc:
                raise ResourceError(f"artifact {path!r}: no such folder") from exc
            os.close(fd)
            fd = inner
        try:
            file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise ResourceError(f"artifact {path!r}: no such file") from exc
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ResourceError(f"artifact {path!r} is not a regular file")
        if info.st_size > ARTIFACT_READ_LIMIT:
            raise ResourceError(
                f"artifact {path!r} is {info.st_size} bytes, more than the "
                f"{ARTIFACT_READ_LIMIT} a read returns"
            )
        return handle.read(ARTIFACT_READ_LIMIT + 1)[:ARTIFACT_READ_LIMIT]
