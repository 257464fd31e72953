"""Run a host tool (debootstrap, tar, pip) and turn its failure into an ImageError."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from execloop.errors import ImageError

__all__ = ["run_tool", "tail"]


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text``: errors are at the end of a tool's output."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_tool(cmd: Sequence[str], *, hint: str, env: dict[str, str] | None = None) -> str:
    """Run ``cmd``; return its stdout; raise ImageError with the output tail and ``hint``."""
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError as exc:
        raise ImageError(f"{cmd[0]} is not installed. Hint: {hint}") from exc
    if proc.returncode != 0:
        output = tail(proc.stdout + "\n" + proc.stderr)
        raise ImageError(
            f"{cmd[0]} failed with exit code {proc.returncode}:\n{output}\nHint: {hint}"
        )
    return proc.stdout
