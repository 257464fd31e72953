"""The wheelhouse: the image's Python packages, downloaded on the host by ``pip download``.

The image build runs with ``--network none``, so every wheel is fetched here first, for the
*image's* interpreter (CPython 3.11, glibc manylinux) whatever the host Python is. A finished
wheelhouse is cached per requirements and machine and reused; a marker file written last
tells a complete download from an interrupted one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from execloop.errors import ImageError

from ._run import run_tool

__all__ = [
    "GLIBC_MINORS",
    "MARKER",
    "PYTHON_VERSION",
    "ensure_wheelhouse",
    "manylinux_platforms",
    "normalize_machine",
    "pip_download_command",
    "wheelhouse_dir",
]

PYTHON_VERSION = "3.11"
# glibc 2.17 (manylinux2014) up to bookworm's 2.36. pip does not expand manylinux_2_x tags to
# older ones by itself, so every accepted tag is listed.
GLIBC_MINORS = range(17, 37)
MARKER = ".complete"

_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def normalize_machine(machine: str) -> str:
    """Map ``platform.machine()`` spellings to the manylinux architecture name."""
    try:
        return _MACHINES[machine.lower()]
    except KeyError:
        raise ImageError(
            f"no manylinux wheels for machine {machine!r}; supported: x86_64, aarch64"
        ) from None


def manylinux_platforms(machine: str) -> list[str]:
    """pip ``--platform`` values for a glibc Linux image on ``machine``."""
    arch = normalize_machine(machine)
    return [f"manylinux2014_{arch}"] + [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]


def pip_download_command(requirements: Path, dest: Path, *, machine: str) -> list[str]:
    """The ``pip download`` command that fills ``dest`` with wheels for the image."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--progress-bar=off",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        "--abi",
        "cp" + PYTHON_VERSION.replace(".", ""),
    ]
    for plat in manylinux_platforms(machine):
        cmd += ["--platform", plat]
    return [*cmd, "--dest", str(dest), "-r", str(requirements)]


def _cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "execloop" / "wheelhouse"


def wheelhouse_dir(requirements: bytes, *, machine: str, root: Path | None = None) -> Path:
    """Cache directory for these requirements on this machine (wheels differ per arch)."""
    key = hashlib.sha256(
        b"\0".join([requirements, normalize_machine(machine).encode(), PYTHON_VERSION.encode()])
    ).hexdigest()[:16]
    return (root or _cache_root()) / key


def ensure_wheelhouse(
    requirements: bytes, *, machine: str | None = None, root: Path | None = None
) -> Path:
    """Return the directory of wheels for ``requirements``, downloading them if needed."""
    machine = machine or platform.machine()
    final = wheelhouse_dir(requirements, machine=machine, root=root)
    if (final / MARKER).is_file():
        return final / "wheels"
    final.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the final place and rename: a crash never leaves a half wheelhouse.
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=final.parent))
    try:
        req = partial / "requirements.txt"
        req.write_bytes(requirements)
        run_tool(
            pip_download_command(req, partial / "wheels", machine=machine),
            hint="check that PyPI is reachable (pip config, proxy) and that every requirement "
            f"has a cp311 manylinux wheel for {machine}",
        )
        (partial / MARKER).write_text("\n".join(sorted(_wheel_names(partial / "wheels"))) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final / "wheels"


def _wheel_names(wheels: Path) -> list[str]:
    return [p.name for p in wheels.iterdir() if p.name.endswith(".whl")]
