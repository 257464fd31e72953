"""The kernel in a hardened Docker container (``docker_backend.container_request``).

Only the command differs from a ``DockerSandbox``'s container: network none, uid 1000, no
capabilities, read-only root, tmpfs ``/tmp``, limits, labels and docker-init are the same. The
init matters here: it passes the SIGINT of an interrupt on to the kernel. Docker SDK errors are
mapped by ``docker_backend._docker_call``, the backend's one place for that.

A container whose kernel exited is removed as soon as a poll sees it, its final state and logs
kept for the questions that follow (exit status, OOM, logs): a client that only sends a
shutdown request (``jupyter console``) leaves no ``Exited`` container behind, and one that dies
leaves nothing either (its janitor removes the container).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psutil

from execloop.errors import SandboxError, SandboxGoneError, SandboxStartError
from execloop.sandboxes import janitor
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.docker_backend import (
    _docker_call,
    container_request,
    default_client,
    default_image,
    removed_already,
)
from execloop.sandboxes.kernel_provisioners import SandboxKernelProvisioner, sandbox_owner
from execloop.sandboxes.reaper import reap_orphans, sandbox_labels

__all__ = ["ContainerKernelProvisioner", "cgroup_dir"]

_OWN_PYTHON = "/opt/execloop/venv/bin/python"
_ENDED = ("exited", "dead")
_reaped = threading.Event()


def cgroup_dir(container_id: str) -> Path | None:
    """The container's memory cgroup on this host (v1 or v2, cgroupfs or systemd driver);
    None when there is none here (a remote daemon)."""
    for folder in (
        f"/sys/fs/cgroup/memory/docker/{container_id}",
        f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope",
        f"/sys/fs/cgroup/docker/{container_id}",
        f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope",
    ):
        path = Path(folder)
        if path.is_dir():
            return path
    return None


def _read_number(folder: Path | None, name: str, key: str | None = None) -> int | None:
    """A number from a cgroup file: its first word, or the value on the line ``key``."""
    if folder is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        text = (folder / name).read_text()
        if key is None:
            return int(text.split()[0])
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return None


class ContainerKernelProvisioner(SandboxKernelProvisioner):
    """Runs the kernel in a hardened, network-less container labelled with its session."""

    placement = "docker"
    _container: Any = None
    _init: psutil.Process | None = None
    _cgroup: Path | None = None
    _watched: janitor.Resource | None = None
    _final: dict[str, Any] | None = None  # the State of a container that ended, once removed
    _final_logs = ""

    def _python(self) -> str:
        return _OWN_PYTHON if self.sandbox_spec.image is None else "python3"

    async def _launch(self, command: list[str]) -> None:
        spec = self.sandbox_spec
        client = await anyio.to_thread.run_sync(default_client)
        if not _reaped.is_set():  # once per process: containers of crashed owners go
            _reaped.set()
            # best effort: listing races with containers removed meanwhile (SandboxGoneError)
            with contextlib.suppress(SandboxError):
                await _docker_call(reap_orphans, client)
        uid, gid = sandbox_owner(self.workspace_dir)
        labels = sandbox_labels(backend="jupyter", session=self.sandbox_id)
        request = container_request(
            spec.model_copy(update={"workspace_dir": self.workspace_dir}),
            image=default_image() if spec.image is None else spec.image,
            own_image=True,  # decides the helper's command only, and that is replaced
            control_dir=self.control_dir,
            labels=labels,
            user=f"{uid}:{gid}",
        )
        request.update(command=command, environment=self._env)
        self._final, self._final_logs = None, ""
        # before the create: if this process dies at any point from here, the container goes
        self._watched = janitor.watch(janitor.containers(labels))
        self._container = await _docker_call(client.containers.create, **request)
        try:
            await _docker_call(self._container.start)
            await _docker_call(self._container.reload)
        except SandboxError as exc:
            raise SandboxStartError(f"the kernel's container did not start: {exc}") from exc
        self._init, self._cgroup = None, cgroup_dir(self._container.id)
        with contextlib.suppress(psutil.Error, KeyError, ValueError):  # remote daemon: no view
            self._init = psutil.Process(int(self._container.attrs["State"]["Pid"]))

    async def _state(self) -> dict[str, Any] | None:
        """The container's State (its last one once it ended), or None if it is gone."""
        if self._final is not None:
            return self._final
        if self._container is None:
            return None
        try:
            await _docker_call(self._container.reload)
        except SandboxGoneError:
            return None
        state: dict[str, Any] = self._container.attrs.get("State", {})
        if state.get("Status") in _ENDED:  # the kernel exited: keep what is asked, remove it
            self._final, self._final_logs = state, await self.logs()
            with contextlib.suppress(SandboxError):  # a poll answers; the janitor retries
                await self._remove()
        return state

    async def poll(self) -> int | None:
        state = await self._state()
        if state is None:
            return -signal.SIGKILL
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    async def send_signal(self, signum: int) -> None:
        if self._container is not None:  # to docker-init, which passes it on to the kernel
            with contextlib.suppress(SandboxError):  # not running any more: nothing to signal
                await _docker_call(self._container.kill, signal=int(signum))

    async def _remove(self) -> None:
        container, self._container, self._init, self._cgroup = self._container, None, None, None
        watched, self._watched = self._watched, None
        if container is not None:
            try:
                await _docker_call(container.remove, force=True)
            except SandboxError as exc:  # still watched: the janitor removes it at our exit
                if not removed_already(exc):
                    raise
        if watched is not None:
            janitor.forget(watched)

    def _root_process(self) -> psutil.Process | None:
        return self._init

    async def _may_have_strays(self) -> bool:
        if self._cgroup is None:
            return self._container is not None
        with contextlib.suppress(OSError):  # more than docker-init and the kernel?
            return len((self._cgroup / "cgroup.procs").read_text().split()) > 2
        return True

    async def death_reason(self) -> ExitReason:
        for _ in range(40):  # the kernel's exit and Docker's record of it race
            state = await self._state()
            if state is None:
                break
            if not state.get("Running"):
                return ExitReason.OOM if state.get("OOMKilled") else ExitReason.KILLED
            await anyio.sleep(0.05)
        return ExitReason.KILLED

    async def memory(self) -> tuple[int | None, int | None]:
        folder = self._cgroup  # v1 names first, then v2's
        peak = _read_number(folder, "memory.max_usage_in_bytes")
        if peak is None:
            peak = _read_number(folder, "memory.peak")
        oom = _read_number(folder, "memory.oom_control", "oom_kill")
        if oom is None:
            oom = _read_number(folder, "memory.events", "oom_kill")
        return peak, oom

    async def logs(self) -> str:
        if self._container is None:
            return self._final_logs
        with contextlib.suppress(SandboxError):
            logs: bytes = await _docker_call(self._container.logs, tail=50)
            return logs.decode("utf-8", "replace")
        return ""
