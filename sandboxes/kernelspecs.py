"""The execloop kernelspecs, and the pure rules that map a kernel between host and sandbox.

A kernelspec names one of execloop's kernel provisioners in ``metadata.kernel_provisioner``, so a
plain ``KernelManager`` (and so ``nbclient``) runs its kernel in a sandbox. The kernel speaks the
``ipc`` transport: its sockets are files in a control directory that the host mounts into the
sandbox, so no network is needed. The connection file therefore exists twice, identical but for
``ip``: the host's names the host path of the control directory, the sandbox's names its mount.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from execloop.errors import ConfigError
from execloop.sandboxes.spec import Placement

__all__ = [
    "KERNEL_ARGV",
    "KERNEL_NAMES",
    "PROVISIONER_NAMES",
    "SANDBOX_CONTROL_DIR",
    "SANDBOX_WORKSPACE",
    "install_kernelspecs",
    "kernelspec_dict",
    "sandbox_command",
    "sandbox_connection_info",
    "sandbox_connection_path",
    "socket_base",
]

KERNEL_NAMES: dict[Placement, str] = {
    "docker": "execloop-docker",
    "bubblewrap": "execloop-bubblewrap",
}
PROVISIONER_NAMES: dict[Placement, str] = {
    "docker": "execloop-docker-provisioner",
    "bubblewrap": "execloop-bubblewrap-provisioner",
}
SANDBOX_CONTROL_DIR = "/run/execloop"
SANDBOX_WORKSPACE = "/workspace"
_SOCKET_STEM = "kernel"  # sockets are <control dir>/kernel-<n>; short, far from the 108 B limit

# "python" is replaced by the sandbox's interpreter. IPython warns on every SystemExit ("To exit:
# use 'exit'..."), which is noise when a script ends itself; plain tracebacks read like Python's.
KERNEL_ARGV = (
    "python",
    "-W",
    "ignore:To exit:UserWarning",
    "-m",
    "ipykernel_launcher",
    "-f",
    "{connection_file}",
    "--InteractiveShell.xmode=Plain",
)
_DISPLAY_NAMES: dict[Placement, str] = {
    "docker": "Python 3 (execloop, Docker container)",
    "bubblewrap": "Python 3 (execloop, bubblewrap)",
}


def kernelspec_dict(
    placement: Placement, *, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``kernel.json`` content of the kernel for ``placement`` (``config`` → provisioner)."""
    return {
        "argv": list(KERNEL_ARGV),
        "display_name": _DISPLAY_NAMES[placement],
        "language": "python",
        "interrupt_mode": "signal",
        "env": {},
        "metadata": {
            "debugger": False,
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAMES[placement],
                "config": dict(config or {}),
            },
        },
    }


def install_kernelspecs(prefix: Path | None = None) -> list[Path]:
    """Write both kernelspecs under ``prefix/share/jupyter/kernels`` (default: ``sys.prefix``,
    the environment execloop is installed in, which Jupyter always searches). A ``prefix``
    that is not an existing directory, or cannot be written, is a ``ConfigError`` naming it."""
    base = Path(sys.prefix if prefix is None else prefix)
    if not base.is_dir():
        raise ConfigError(
            f"{base} is not an existing directory: the prefix is the root of a Python "
            f"environment (kernelspecs go under PREFIX/share/jupyter/kernels), e.g. {sys.prefix}"
        )
    root = base / "share" / "jupyter" / "kernels"
    written = []
    try:
        for placement, name in KERNEL_NAMES.items():
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps(kernelspec_dict(placement), indent=2) + "\n"
            partial = folder / "kernel.json.partial"  # renamed into place: never half-written
            partial.write_text(text, encoding="utf-8")
            partial.replace(folder / "kernel.json")
            written.append(folder)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the kernelspecs under {root}: {exc.strerror or exc}; choose a prefix "
            "you can write to (a virtualenv of your own) or fix that directory's permissions"
        ) from exc
    return written


def socket_base(control_dir: Path) -> str:
    """The host-side ``ip`` of an ipc kernel whose control directory is ``control_dir``."""
    return str(control_dir / _SOCKET_STEM)


def sandbox_connection_path(session_id: str) -> str:
    """Where the sandbox reads its connection file; the session id marks the kernel's command
    line so that leak checks find it."""
    return f"{SANDBOX_CONTROL_DIR}/kernel-{session_id}.json"


def sandbox_connection_info(host_info: Mapping[str, Any]) -> dict[str, Any]:
    """The host's connection info as the sandbox must see it: ``ip`` moved to the mount point,
    the key as text (it is bytes in a ``KernelManager``), nothing else changed."""
    if host_info.get("transport") != "ipc":
        raise ValueError(
            f"sandboxed kernels use the ipc transport, not {host_info.get('transport')}"
        )
    info = dict(host_info)
    info["ip"] = f"{SANDBOX_CONTROL_DIR}/{_SOCKET_STEM}"
    key = info.get("key", b"")
    info["key"] = key.decode() if isinstance(key, bytes) else str(key)
    return info


def sandbox_command(
    argv: Sequence[str], *, python: str, session_id: str, extra_arguments: Sequence[str] = ()
) -> list[str]:
    """The kernelspec's ``argv`` as run inside the sandbox."""
    connection_file = sandbox_connection_path(session_id)
    command = [arg.replace("{connection_file}", connection_file) for arg in argv]
    if command and command[0] in ("python", "python3"):
        command[0] = python
    return command + list(extra_arguments)
