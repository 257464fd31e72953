"""How the host's interpreter (and its venv) appears inside a bubblewrap sandbox: read-only
under ``/opt/execloop``, never at its host path, which may lie under ``/root`` or ``/work``."""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from execloop.errors import BackendUnavailableError

__all__ = ["GUEST_PYTHON", "GUEST_VENV", "PythonLayout", "host_python", "python_layout"]

GUEST_PYTHON = "/opt/execloop/python"
GUEST_VENV = "/opt/execloop/venv"


@dataclass(frozen=True)
class PythonLayout:
    """How the host's interpreter appears in the sandbox."""

    base_prefix: Path  # host directory bound at /opt/execloop/python
    executable: str  # the base interpreter, inside
    venv_lib: Path | None = None  # host venv's lib/ bound at /opt/execloop/venv/lib
    pyvenv_cfg: str | None = None  # the relocated venv's pyvenv.cfg
    library_path: str | None = None  # LD_LIBRARY_PATH for a shared libpython in the prefix

    @property
    def interpreter(self) -> str:
        return f"{GUEST_VENV}/bin/python" if self.venv_lib is not None else self.executable


def python_layout(
    *,
    executable: Path,
    prefix: Path,
    base_prefix: Path,
    libdir: Path | None,
    include_system_site: bool = False,
) -> PythonLayout:
    """Relocate an interpreter (resolved paths) to /opt/execloop; a venv is rebuilt there
    from its ``lib/`` and a new ``pyvenv.cfg`` whose ``home`` is the relocated base."""
    try:
        relative = executable.relative_to(base_prefix)
    except ValueError as exc:
        raise BackendUnavailableError(
            f"the interpreter {executable} is not inside its prefix {base_prefix}; "
            "run execloop with a regular CPython installation or venv"
        ) from exc
    library_path = None
    if libdir is not None and libdir.is_relative_to(base_prefix):
        # its RUNPATH names the host path, which the sandbox does not have
        library_path = f"{GUEST_PYTHON}/{libdir.relative_to(base_prefix)}".rstrip("/.")
    inside = f"{GUEST_PYTHON}/{relative}"
    if prefix == base_prefix:
        return PythonLayout(base_prefix, inside, library_path=library_path)
    config = (
        f"home = {GUEST_PYTHON}/{relative.parent}\n"
        f"include-system-site-packages = {str(include_system_site).lower()}\n"
    )
    return PythonLayout(base_prefix, inside, prefix / "lib", config, library_path)


def host_python() -> PythonLayout:
    """The layout of the interpreter running execloop."""
    prefix = Path(sys.prefix).resolve()
    include_system_site = False
    if prefix != Path(sys.base_prefix).resolve():
        config = (prefix / "pyvenv.cfg").read_text(errors="replace").lower()
        include_system_site = "include-system-site-packages = true" in config
    shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    libdir = sysconfig.get_config_var("LIBDIR")
    return python_layout(
        executable=Path(sys.executable).resolve(),
        prefix=prefix,
        base_prefix=Path(sys.base_prefix).resolve(),
        libdir=Path(libdir).resolve() if shared and libdir else None,
        include_system_site=include_system_site,
    )
