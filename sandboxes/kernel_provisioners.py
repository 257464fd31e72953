"""The one jupyter_client kernel provisioner that starts an ipykernel on any placement.

"Where a kernel runs" is jupyter_client's provisioner: a kernelspec naming one of execloop's
(``kernelspecs.py``) makes any ``KernelManager``, nbclient's included, start its kernel on a
``Placement`` (``placements/``: a hardened container or a bubblewrap sandbox, the very ones the
helper backends use), while "how code is sent" stays jupyter_client's own client. The entry
points name one subclass per placement (``container_provisioner.py``,
``bubblewrap_provisioner.py``): a kernelspec can name only a class.

The kernel uses the ``ipc`` transport through a host directory mounted at ``/run/execloop``: the
manager writes the host's connection file (with its session's fresh HMAC key) for the host path
of that directory, and the provisioner writes the sandbox's copy, identical but for ``ip``, next
to the sockets. Beyond the provisioner API, a provisioner answers what ``JupyterSandbox`` asks:
why its kernel died, the memory high-water mark, and killing the processes a cell left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import psutil
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.manager import KernelManager
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from pydantic import ValidationError
from traitlets import Dict, Unicode

from execloop.errors import ConfigError
from execloop.sandboxes import janitor, kernelspecs
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.cgroup_host import detect_cgroups
from execloop.sandboxes.placements.base import Launch, Placement, workspace_owner
from execloop.sandboxes.placements.bubblewrap import BubblewrapPlacement
from execloop.sandboxes.placements.container import ContainerPlacement
from execloop.sandboxes.placements.process import refuse
from execloop.sandboxes.placements.process_tree import kill_tree
from execloop.sandboxes.progress import guest_environment, ship_progress_module
from execloop.sandboxes.spec import SANDBOX_UID, SandboxSpec
from execloop.sandboxes.spec import Placement as PlacementName
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = ["SandboxKernelProvisioner", "check_placement", "make_placement"]


# The kernel's sockets, each an ipc file ``<ip>-<port>`` in the control directory.
_SOCKETS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def check_placement(spec: SandboxSpec) -> None:
    """Refuse what a kernel's placement cannot enforce (a spec never ignores a field silently)."""
    refuse(
        spec,
        backend="jupyter",
        unsupported={
            "workspace_size": "the workspace is a host directory, which has no size cap",
            # a kernel is stateful: a task resumes in it, not from a directory
            "checkpoint_dir": "use backend='docker' or 'local' for checkpoints",
            "checkpoint_size": "use backend='docker' or 'local' for checkpoints",
        },
    )
    if spec.placement == "bubblewrap":
        advice = "bubblewrap runs the host's Python; use placement 'docker'"
        unsupported = {name: advice for name in ("image", "gpus", "runtime", "labels")}
        unsupported |= detect_cgroups().refusals(instead="use placement 'docker' to limit CPUs")
        refuse(spec, backend="jupyter (bubblewrap)", unsupported=unsupported)


def make_placement(
    name: PlacementName, spec: SandboxSpec, *, session_id: str, workspace: Path
) -> Placement:
    """A kernel's placement: the helper backends' own, the kernel in the helper's place."""
    if name == "docker":
        return ContainerPlacement(
            spec,
            session_id=session_id,
            label="jupyter",
            user=workspace_owner(workspace),
            mount_helper=False,
            inspect=True,  # strays, interrupts and memory are read from the host's view
        )
    return BubblewrapPlacement(spec, session_id=session_id)


class SandboxKernelProvisioner(KernelProvisionerBase):
    """Adapts a ``Placement`` to jupyter_client: configuration, host directories, the two
    connection files, the kernel's command and environment, finding its host process."""

    placement: ClassVar[PlacementName]

    session_id = Unicode("", config=True, help="Marks the sandbox; a fresh id when empty.")
    spec = Dict(config=True, help="SandboxSpec fields (limits, env...); backend/placement implied.")
    workspace = Unicode(
        "", config=True, help="Host directory mounted at /workspace; default: a temporary one."
    )

    _host_dir: Path | None = None
    _own_workspace: Path | None = None
    _connection_file: janitor.Resource | None = None
    _kernel: psutil.Process | None = None
    _launched = False
    _env: dict[str, str]
    _where: Placement | None = None  # a fresh one each launch (a restart launches again)

    # -- configuration and host directories ------------------------------------------------
    @property
    def sandbox_spec(self) -> SandboxSpec:
        if self.spec.get("placement", self.placement) != self.placement:
            raise ConfigError(f"{type(self).__name__} runs placement {self.placement!r} only")
        try:
            spec = SandboxSpec.model_validate(
                {**self.spec, "backend": "jupyter", "placement": self.placement}
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid sandbox spec in the provisioner config: {exc}") from exc
        check_placement(spec)
        return spec

    @property
    def sandbox_id(self) -> str:
        if not self.session_id:
            self.session_id = (self.kernel_id or os.urandom(6).hex()).replace("-", "")[:12]
        return str(self.session_id)

    @property
    def control_dir(self) -> Path:
        assert self._host_dir is not None, "pre_launch() comes first"
        return self._host_dir / "control"

    @property
    def workspace_dir(self) -> Path:
        if self.workspace:
            return Path(self.workspace)
        assert self._own_workspace is not None, "pre_launch() comes first"
        return self._own_workspace

    def _prepare_dirs(self) -> tuple[int, int]:
        if self._host_dir is None:
            # the sandbox user must reach control/ inside
            self._host_dir = make_temp_dir("kernel", mode=0o711, sockets=True)
            self.control_dir.mkdir(mode=0o700)
            if not self.workspace:
                self._own_workspace = self._host_dir / "workspace"
                self._own_workspace.mkdir(mode=0o755)
                if os.geteuid() == 0:
                    os.chown(self._own_workspace, SANDBOX_UID, SANDBOX_UID)
        owner = workspace_owner(self.workspace_dir)
        if os.geteuid() == 0:  # the kernel creates its sockets in there
            os.chown(self.control_dir, *owner)
        return owner

    def _write_sandbox_connection_file(self, owner: tuple[int, int]) -> None:
        inner = self.control_dir / Path(kernelspecs.sandbox_connection_path(self.sandbox_id)).name
        inner.unlink(missing_ok=True)
        # O_EXCL: nothing the sandbox planted in its control directory is followed
        fd = os.open(inner, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            if os.geteuid() == 0:
                os.fchown(fd, *owner)
            json.dump(kernelspecs.sandbox_connection_info(self.connection_info), handle)

    # -- the provisioner API ---------------------------------------------------------------
    @property
    def has_process(self) -> bool:
        return self._launched

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        manager = self.parent
        if not isinstance(manager, KernelManager):
            raise ConfigError(f"{type(self).__name__} needs a KernelManager as its parent")
        spec = self.sandbox_spec
        owner = self._prepare_dirs()
        manager.transport = "ipc"
        manager.ip = kernelspecs.socket_base(self.control_dir)
        if not manager.connection_file:
            manager.connection_file = str(self.control_dir.parent / "connection.json")
        manager.write_connection_file()  # picks the ipc "ports"; on a restart, keeps them
        if not Path(manager.connection_file).is_relative_to(self.control_dir.parent):
            # a client's own (jupyter console/run: the runtime dir) holds the key: it goes too
            self._connection_file = janitor.watch(janitor.path(manager.connection_file))
        self.connection_info = manager.get_connection_info()
        self._write_sandbox_connection_file(owner)
        self._where = make_placement(
            self.placement, spec, session_id=self.sandbox_id, workspace=self.workspace_dir
        )
        command = kernelspecs.sandbox_command(
            self.kernel_spec.argv,
            python=self._where.python,
            session_id=self.sandbox_id,
            extra_arguments=kwargs.pop("extra_arguments", []),
        )
        kwargs = await super().pre_launch(cmd=command, **kwargs)
        # only the kernelspec's own variables cross over: the host environment never does
        kernel_env = {name: kwargs["env"][name] for name in self.kernel_spec.env}
        env = {"HOME": "/tmp", "LANG": "C.UTF-8", **kernel_env, **spec.env}
        ship_progress_module(self.control_dir)  # the kernel can import execloop_progress
        self._env = guest_environment(env, self._where.guest_control_dir(self.control_dir))
        kwargs["env"] = dict(self._env)
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        self._kernel = None
        where = self._placement()
        try:
            await where.launch(
                Launch(
                    command=cmd,
                    control_dir=self.control_dir,
                    workspace=self.workspace_dir,
                    env=self._env,
                )
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await where.remove()
            raise
        self._launched = True
        await self._wait_for_sockets(where)
        return self.connection_info

    async def _wait_for_sockets(self, where: Placement) -> None:
        """Return once the kernel has bound all its ipc sockets (or died, or the start timeout
        passed). A client connects the moment the launch returns, and one connecting to a
        socket not yet there reconnects later: jupyter console, which waits for no iopub
        message before its first cell, then misses that cell's output and "idle" status and
        waits for ever."""
        info: dict[str, Any] = dict(self.connection_info)
        sockets = [Path(f"{info['ip']}-{info[name]}") for name in _SOCKETS]
        deadline = time.monotonic() + self.sandbox_spec.start_timeout_s
        while not all(path.exists() for path in sockets):
            if time.monotonic() > deadline or not await where.alive():
                return  # the client's own wait for the kernel says what went wrong
            await anyio.sleep(0.02)

    def _placement(self) -> Placement:
        assert self._where is not None, "pre_launch() comes first"
        return self._where

    async def poll(self) -> int | None:
        return -signal.SIGKILL if self._where is None else await self._where.exit_status()

    async def send_signal(self, signum: int) -> None:
        if self._where is not None:  # an interrupt goes to the kernel itself where it is seen
            await self._where.signal(signum, process=self.kernel_process())

    async def wait(self) -> int | None:
        # a container or process has nothing to await on: poll it (jupyter_client does too)
        while (status := await self.poll()) is None:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        self._launched = False
        return status

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        if self._where is not None:
            await self._where.remove()
        self._launched = False
        self._kernel = None
        if not restart and self._host_dir is not None:
            host_dir, self._host_dir, self._own_workspace = self._host_dir, None, None
            await anyio.to_thread.run_sync(remove_temp_dir, host_dir)
        if not restart and self._connection_file is not None:
            janitor.forget(self._connection_file)  # the manager removes the file itself
            self._connection_file = None

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(session_id=self.sandbox_id, placement=self.placement)
        return info

    # -- what JupyterSandbox asks ----------------------------------------------------------
    async def death_reason(self) -> ExitReason:
        """After the kernel died: ``OOM`` if the OOM killer did it, else ``KILLED``."""
        return await self._placement().death_reason()

    async def memory(self) -> tuple[int | None, int | None]:
        """``(peak bytes, OOM kills so far)``, each None where this host cannot tell."""
        if self._where is None:
            return None, None
        return await self._where.memory(main=self.kernel_process())

    async def logs(self) -> str:
        """The tail of what the sandbox printed outside the kernel's own capture."""
        return "" if self._where is None else await self._where.logs()

    def kernel_process(self) -> psutil.Process | None:
        """The kernel as a host process, found once by the connection file on its command line
        (psutil checks a process's identity before each signal: a recycled pid is never hit)."""
        if self._kernel is not None:  # asked around every exec: no /proc read once found
            return self._kernel
        root = None if self._where is None else self._where.root_process()
        if root is not None:
            marker = kernelspecs.sandbox_connection_path(self.sandbox_id)
            with contextlib.suppress(psutil.Error):
                for process in root.children(recursive=True):
                    if marker in process.cmdline() and process.name() != "bwrap":
                        self._kernel = process
                        break
        return self._kernel

    async def reap_strays(self) -> int:
        """Kill every process of the sandbox but the kernel and its ancestors; how many."""
        where, kernel = self._where, self.kernel_process()
        if where is None or kernel is None or not await where.crowded(kernel):
            return 0
        root = where.root_process()  # only now: finding it may read /proc
        if root is None:
            return 0
        with contextlib.suppress(psutil.Error):
            keep = frozenset({kernel.pid, *(parent.pid for parent in kernel.parents())})
            return await anyio.to_thread.run_sync(lambda: kill_tree(root.pid, keep=keep))
        return 0
