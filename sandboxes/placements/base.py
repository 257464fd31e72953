"""``Placement``: where a sandbox runs, written once for every channel that talks to it.

As jupyter_client separates where a kernel runs (its provisioner) from how code is sent (its
client), a backend is a channel on a placement: the in-sandbox helper on a container
(``docker``), on bubblewrap (``local``) or on a host process (``restricted``), and an IPython
kernel on a container or bubblewrap (``jupyter``). A placement starts one command with the
control directory at ``GUEST_CONTROL_DIR`` and the workspace at ``GUEST_WORKSPACE`` (a host
process sees both at their host paths: ``guest_control_dir``, ``guest_workspace``), and
answers for it: alive, signal, kill the whole tree, why it died, its memory, its logs, remove
it. A placement launches once; a new launch needs a new placement.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from execloop.errors import ConfigError
from execloop.sandboxes import helper as helper_module
from execloop.sandboxes.base import GUEST_CONTROL_DIR, ExitReason
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.spec import SANDBOX_UID, SandboxSpec

__all__ = ["GUEST_WORKSPACE", "Launch", "Placement", "workspace_owner"]

GUEST_WORKSPACE = "/workspace"


def workspace_owner(workspace: Path) -> tuple[int, int]:
    """The owner of a bound workspace, whom the sandbox runs as; never root."""
    info = workspace.stat()
    if info.st_uid == 0:
        raise ConfigError(
            f"workspace {workspace} belongs to root and the sandbox never runs as root; "
            f"`chown {SANDBOX_UID}:{SANDBOX_UID} {workspace}` (or use a directory you own)"
        )
    return info.st_uid, info.st_gid


@dataclass(frozen=True, kw_only=True)
class Launch:
    """What a placement starts: ``command`` (argv inside) with only ``env``, the host's
    ``control_dir`` and ``workspace`` (None: a private, size-capped one of its own)."""

    command: Sequence[str]
    control_dir: Path
    workspace: Path | None
    env: Mapping[str, str]


class Placement(abc.ABC):
    """One isolated place for one command (see the module docstring)."""

    kind = "placement"
    # Whether the command is pid 2 of a PID namespace of its own (then it may kill every
    # process it sees but init: they are all the sandbox's).
    own_pid_namespace = True
    # The sandbox's own cgroup where execloop made one (memory and OOM kills per exec).
    cgroup: Cgroup | None = None

    def __init__(self, spec: SandboxSpec, *, session_id: str) -> None:
        self.spec = spec
        self.session_id = session_id

    # -- what runs inside ----------------------------------------------------------------
    @property
    @abc.abstractmethod
    def python(self) -> str:
        """The interpreter inside the sandbox."""

    @property
    def helper(self) -> str:
        """Where ``execloop.sandboxes.helper`` is inside."""
        return helper_module.__file__

    def guest_control_dir(self, control_dir: Path) -> str:
        """Where the sandbox sees the host's ``control_dir``."""
        return GUEST_CONTROL_DIR

    def guest_workspace(self, workspace: Path | None) -> str:
        """Where the sandbox sees its workspace (``workspace``: a host directory, or None)."""
        return GUEST_WORKSPACE

    @property
    def owner(self) -> tuple[int, int] | None:
        """The host uid/gid the sandbox's code runs as when execloop (as root) must hand its
        sockets over; None when it is this process's own user."""
        return None

    # -- life ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def launch(self, what: Launch) -> None:
        """Start it (``SandboxStartError`` if it cannot)."""

    @abc.abstractmethod
    async def exit_status(self) -> int | None:
        """None while it runs; then its exit status (negative: the signal; gone: -SIGKILL)."""

    async def alive(self) -> bool:
        return await self.exit_status() is None

    @abc.abstractmethod
    async def signal(self, signum: int, *, process: psutil.Process | None = None) -> None:
        """Send ``signum`` to the command (``process``: the host process that must get it when
        the placement's init forwards no signal). SIGKILL kills the whole tree."""

    @abc.abstractmethod
    async def kill(self) -> None:
        """Kill the whole sandbox at once (every process of it)."""

    @abc.abstractmethod
    async def death_reason(self, *, oom_before: int | None = None) -> ExitReason:
        """After the command vanished: ``OOM`` if the OOM killer did it (an OOM-kill count
        above ``oom_before``), else ``KILLED``."""

    @abc.abstractmethod
    async def memory(self, *, main: psutil.Process | None = None) -> tuple[int | None, int | None]:
        """``(peak bytes, OOM kills so far)``, each None where this host cannot tell; the
        last reading once removed. ``main``: the process whose own peak stands in."""

    @abc.abstractmethod
    async def logs(self) -> str:
        """The tail of what the command printed outside its channel."""

    @abc.abstractmethod
    async def remove(self) -> None:
        """Kill and release everything the sandbox held. Idempotent."""

    # -- its processes, as the host sees them ------------------------------------------------
    @abc.abstractmethod
    def root_process(self) -> psutil.Process | None:
        """The host process every process of the sandbox descends from, where visible."""

    async def crowded(self, main: psutil.Process | None) -> bool:
        """Whether processes other than the placement's init and ``main`` may be running
        (a cheap test that spares a walk over the host's processes when it says no)."""
        return True
