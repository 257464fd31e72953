"""The container placement: one hardened, network-less Docker container per sandbox.

Every default of DESIGN.md's "Security defaults" is set in ``container_request`` (a pure
function, so tests can pin the exact request). The docker SDK blocks, so each call goes
through a worker thread; its errors are mapped to execloop's in ``docker_call`` only. The
container runs with docker-init, which passes signals on to the command (an interrupt reaches a
kernel). A container whose command ended is removed as soon as ``exit_status`` sees it, its
final state and logs kept for the questions that follow (exit status, OOM, logs).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import psutil

from execloop.errors import (
    BackendUnavailableError,
    ImageError,
    SandboxError,
    SandboxGoneError,
    SandboxStartError,
)
from execloop.sandboxes import helper as helper_module
from execloop.sandboxes import janitor
from execloop.sandboxes.base import GUEST_CONTROL_DIR, ExitReason
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.placements.base import (
    GUEST_WORKSPACE,
    Launch,
    Placement,
    workspace_owner,
)
from execloop.sandboxes.reaper import LABEL_SESSION, remove_orphans_once, sandbox_labels
from execloop.sandboxes.spec import GUEST_CHECKPOINTS, SANDBOX_UID, GpuRequest, SandboxSpec
from execloop.sandboxes.threads import with_thread_limits

__all__ = [
    "ContainerPlacement",
    "NVIDIA_HOOK",
    "OWN_HELPER",
    "OWN_PYTHON",
    "cgroup_dir",
    "check_gpu_support",
    "container_request",
    "default_client",
    "default_image",
    "docker_call",
    "gpu_device_request",
    "own_image_tag",
    "removed_already",
    "run_as_ids",
]

T = TypeVar("T")
OWN_HELPER = "/opt/execloop/helper.py"
OWN_PYTHON = "/opt/execloop/venv/bin/python"
MOUNTED_HELPER = "/opt/execloop-host/helper.py"
# What Docker's built-in "nvidia" device driver runs (nvidia-container-toolkit installs it).
NVIDIA_HOOK = "nvidia-container-runtime-hook"
_ENDED = ("exited", "dead")

log = logging.getLogger("execloop.sandboxes.placements")
_client_lock = threading.Lock()
_client: Any = None


def default_client() -> Any:
    """A shared ``docker.DockerClient`` from the environment (``DOCKER_HOST`` etc.)."""
    global _client
    with _client_lock:
        if _client is None:
            import docker
            import docker.errors

            try:
                _client = docker.from_env(max_pool_size=32)
                _client.ping()
            except docker.errors.DockerException as exc:
                _client = None
                raise BackendUnavailableError(
                    "no Docker daemon answers; start one with `sudo scripts/docker-up.sh` "
                    f"(or set DOCKER_HOST), then run `execloop doctor`: {exc}"
                ) from exc
        return _client


def default_image() -> str:
    from execloop.images import python_image_tag

    return python_image_tag()


def own_image_tag(image: str | None) -> str | None:
    """The hashed tag when ``image`` is None or a short name of execloop's own images
    (``execloop/train``, ...), whose python and helper are baked in; else None."""
    from execloop.images.names import own_image_tag as resolve

    return resolve(image)


async def docker_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking docker SDK call in a thread, mapping its errors to execloop's."""
    import docker.errors
    import requests.exceptions

    try:
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))
    except docker.errors.ImageNotFound as exc:
        raise ImageError(
            f"image not found: {exc.explanation}; build it with {_build_command(exc.explanation)}"
        ) from exc
    except docker.errors.NotFound as exc:  # the container is gone: data, never its message
        raise SandboxGoneError(
            f"Docker has no such container: {exc.explanation or exc}", status_code=404
        ) from exc
    except docker.errors.APIError as exc:
        raise SandboxError(
            f"Docker refused the request: {exc.explanation or exc}", status_code=exc.status_code
        ) from exc
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise BackendUnavailableError(
            f"the Docker daemon stopped answering: {exc}; run `execloop doctor`"
        ) from exc


def _build_command(explanation: object) -> str:
    text = str(explanation)
    if "execloop/train-cpu:" in text:
        return "`execloop images build train --torch cpu`"
    if "execloop/train:" in text:
        return "`execloop images build train`"
    return "`execloop images build`"


def removed_already(exc: SandboxError) -> bool:
    """Whether a failed container removal means it is gone or going: no such container, or
    Docker's 409 Conflict for a removal already in progress."""
    return isinstance(exc, SandboxGoneError) or exc.status_code == HTTPStatus.CONFLICT


def container_request(
    spec: SandboxSpec,
    *,
    image: str,
    own_image: bool,
    control_dir: Path,
    labels: dict[str, str],
    user: str = f"{SANDBOX_UID}:{SANDBOX_UID}",
    command: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``: the whole hardened request.
    ``command`` None runs the helper (bound in read-only from the host into a foreign image)."""
    from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

    mounts = [Mount(target=GUEST_CONTROL_DIR, source=str(control_dir), type="bind")]
    tmpfs = {"/tmp": f"rw,nosuid,nodev,size={spec.tmp_size},mode=1777"}
    if spec.workspace_dir is not None:
        mounts.append(Mount(target=GUEST_WORKSPACE, source=str(spec.workspace_dir), type="bind"))
    else:
        uid, _, gid = user.partition(":")
        tmpfs[GUEST_WORKSPACE] = (
            f"rw,nosuid,nodev,size={spec.workspace_size},uid={uid},gid={gid or uid},mode=0755"
        )
    if spec.checkpoint_dir is not None:  # outlives the container: a killed run resumes
        mounts.append(Mount(target=GUEST_CHECKPOINTS, source=str(spec.checkpoint_dir), type="bind"))
    if not own_image:  # any image with python3 works: the helper is bound in read-only,
        # file by file, each resolved (an editable install's folder holds links to the host)
        folder = os.path.dirname(MOUNTED_HELPER)
        for name, source in helper_module.shipped_files():
            target = f"{folder}/{name}"
            mounts.append(Mount(target=target, source=source, type="bind", read_only=True))
    if command is None:
        python, helper = (OWN_PYTHON, OWN_HELPER) if own_image else ("python3", MOUNTED_HELPER)
        command = [python, helper, f"{GUEST_CONTROL_DIR}/ctl.sock", "--workspace"]
        command += [GUEST_WORKSPACE, "--reap-all", "--session", labels.get(LABEL_SESSION, "")]
    request: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "user": user,
        "working_dir": GUEST_WORKSPACE,
        "environment": with_thread_limits(
            {"HOME": "/tmp", **spec.env} if environment is None else environment, cpus=spec.cpus
        ),
        "labels": labels,
        "hostname": "sandbox",
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": tmpfs,
        "mounts": mounts,
        "pids_limit": spec.pids,
        "mem_limit": spec.memory,
        "memswap_limit": spec.memory,
        "nano_cpus": int(spec.cpus * 1e9),
        "ulimits": [
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="nofile", soft=4096, hard=4096),
        ],
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "init": True,
        "ipc_mode": "private",
        "stdin_open": False,
        "tty": False,
    }
    if spec.gpus:
        request["device_requests"] = [gpu_device_request(spec.gpus, DeviceRequest)]
    if spec.runtime:
        request["runtime"] = spec.runtime
    return request


def gpu_device_request(gpus: GpuRequest, request_type: Callable[..., T]) -> T:
    """Docker's ``--gpus``: every GPU is count -1, a number is a count, ids are pinned."""
    if isinstance(gpus, tuple):
        return request_type(driver="nvidia", device_ids=list(gpus), capabilities=[["gpu"]])
    count = -1 if gpus == "all" else gpus
    return request_type(driver="nvidia", count=count, capabilities=[["gpu"]])


def check_gpu_support(info: Mapping[str, Any], *, hook: str | None) -> None:
    """Refuse a GPU request before a container is created where the daemon cannot honour it:
    no ``nvidia`` runtime registered and, for a local daemon, no NVIDIA container hook (what
    Docker's built-in ``nvidia`` device driver runs) on this host either."""
    runtimes = sorted(info.get("Runtimes") or {})
    if "nvidia" in runtimes or hook:
        return
    raise BackendUnavailableError(
        f"this task asks for GPUs but the Docker daemon has no NVIDIA runtime (runtimes: "
        f"{', '.join(runtimes) or 'none'}); on a host with an NVIDIA GPU install "
        "nvidia-container-toolkit, run `nvidia-ctk runtime configure --runtime=docker` and "
        "restart dockerd (`execloop doctor` shows what is there), or drop gpus to run on the CPU"
    )


def run_as_ids(spec: SandboxSpec) -> tuple[int, int]:
    """Who the container runs as: the owner of a bound workspace (so the sandbox can write to
    it), else uid 1000 when execloop is root, else the caller (who then owns its sockets)."""
    if spec.workspace_dir is not None:
        return workspace_owner(spec.workspace_dir)
    if os.geteuid() == 0:
        return SANDBOX_UID, SANDBOX_UID
    return os.getuid(), os.getgid()


def cgroup_dir(container_id: str) -> Cgroup | None:
    """The container's memory cgroup on this host (v1 or v2, cgroupfs or systemd driver), to
    read (Docker's, not ours to remove); None when there is none here (a remote daemon)."""
    for version, folder in (
        (1, f"/sys/fs/cgroup/memory/docker/{container_id}"),
        (1, f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope"),
        (2, f"/sys/fs/cgroup/docker/{container_id}"),
        (2, f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope"),
    ):
        path = Path(folder)
        if path.is_dir():
            return Cgroup(version=version, dirs={"memory": path})  # type: ignore[arg-type]
    return None


def _short_names() -> tuple[str, ...]:
    from execloop.images.names import SHORT_NAMES

    return SHORT_NAMES


class ContainerPlacement(Placement):
    """A hardened container labelled with its session (``container_request``).

    ``label`` names the backend on the container; ``mount_helper`` binds the host's helper
    into a foreign image; ``inspect`` finds the host view of its processes and cgroup after
    the start (one more API call: only channels that ask about processes need it)."""

    kind = "container"

    def __init__(
        self,
        spec: SandboxSpec,
        *,
        session_id: str,
        label: str,
        client: Any = None,
        user: tuple[int, int] | None = None,
        mount_helper: bool = True,
        inspect: bool = False,
    ) -> None:
        super().__init__(spec, session_id=session_id)
        self.label = label
        self.user = user
        self.container: Any = None
        self._client = client
        self._mount_helper = mount_helper
        self._inspect = inspect
        self._watched: janitor.Resource | None = None
        self._init: psutil.Process | None = None
        self._cgroup: Cgroup | None = None  # Docker's: read, never removed
        self._final: dict[str, Any] | None = None  # the State of a container that ended
        self._final_logs = ""

    @property
    def own_image(self) -> bool:
        return self.spec.image is None or self.spec.image in _short_names()

    @property
    def python(self) -> str:
        return OWN_PYTHON if self.own_image else "python3"

    @property
    def helper(self) -> str:
        """Where the helper is inside."""
        return OWN_HELPER if self.own_image else MOUNTED_HELPER

    @property
    def owner(self) -> tuple[int, int] | None:
        return self._user() if os.geteuid() == 0 else None

    def _user(self) -> tuple[int, int]:
        return self.user if self.user is not None else run_as_ids(self.spec)

    async def launch(self, what: Launch) -> None:
        if self._client is None:
            self._client = await anyio.to_thread.run_sync(default_client)
        await remove_orphans_once(self._client)
        if self.spec.gpus:
            info = await docker_call(self._client.info)
            check_gpu_support(info, hook=shutil.which(NVIDIA_HOOK))
        spec = self.spec
        if what.workspace != spec.workspace_dir:
            spec = spec.model_copy(update={"workspace_dir": what.workspace})
        uid, gid = self._user()
        labels = sandbox_labels(backend=self.label, session=self.session_id)
        request = container_request(
            spec,
            image=own_image_tag(spec.image) or str(spec.image),
            own_image=self.own_image or not self._mount_helper,
            control_dir=what.control_dir,
            labels={**spec.labels, **labels},  # the spec refuses keys of execloop's own
            user=f"{uid}:{gid}",
            command=what.command,
            environment=what.env,
        )
        # before the create: if this process dies at any point from here, the container goes
        self._watched = janitor.watch(janitor.containers(labels))
        self.container = await docker_call(self._client.containers.create, **request)
        log.debug("created container %s for session %s", self.container.short_id, self.session_id)
        try:
            await docker_call(self.container.start)
            if self._inspect:
                await docker_call(self.container.reload)
        except SandboxError as exc:
            raise SandboxStartError(
                f"container {self.container.short_id} did not start: {exc}"
            ) from exc
        if self._inspect:
            self._cgroup = cgroup_dir(self.container.id)
            with contextlib.suppress(psutil.Error, KeyError, ValueError):  # remote daemon
                self._init = psutil.Process(int(self.container.attrs["State"]["Pid"]))

    async def _state(self) -> dict[str, Any] | None:
        """The container's State (its last one once it ended), or None if it is gone."""
        if self._final is not None:
            return self._final
        if self.container is None:
            return None
        try:
            await docker_call(self.container.reload)
        except SandboxGoneError:
            return None
        state: dict[str, Any] = self.container.attrs.get("State", {})
        if state.get("Status") in _ENDED:  # it exited: keep what is asked, remove it
            self._final, self._final_logs = state, await self.logs()
            with contextlib.suppress(SandboxError):  # a poll answers; the janitor retries
                await self.remove()
        return state

    async def exit_status(self) -> int | None:
        try:
            state = await self._state()
        except SandboxError:
            return None  # the daemon did not answer this time: nothing says it ended
        if state is None:
            return -signal.SIGKILL
        return None if state.get("Running") else int(state.get("ExitCode", -1))

    async def signal(self, signum: int, *, process: psutil.Process | None = None) -> None:
        if self.container is not None:  # to docker-init, which passes it on
            with contextlib.suppress(SandboxError):  # not running any more: nothing to signal
                await docker_call(self.container.kill, signal=int(signum))

    async def kill(self) -> None:
        await self.signal(signal.SIGKILL)

    async def death_reason(self, *, oom_before: int | None = None) -> ExitReason:
        for _ in range(40):  # the command's exit and Docker's record of it race
            try:
                state = await self._state()
            except SandboxError:
                break
            if state is None:
                break
            if not state.get("Running"):
                return ExitReason.OOM if state.get("OOMKilled") else ExitReason.KILLED
            await anyio.sleep(0.05)
        return ExitReason.KILLED

    async def memory(self, *, main: psutil.Process | None = None) -> tuple[int | None, int | None]:
        if self._cgroup is None:
            return None, None
        return self._cgroup.peak_memory(), self._cgroup.oom_kills()

    async def logs(self) -> str:
        if self.container is None:
            return self._final_logs
        with contextlib.suppress(SandboxError):
            logs: bytes = await docker_call(self.container.logs, tail=50)
            return logs.decode("utf-8", "replace")
        return ""

    def root_process(self) -> psutil.Process | None:
        return self._init

    async def crowded(self, main: psutil.Process | None) -> bool:
        if self._cgroup is None:
            return self.container is not None
        return self._cgroup.holds_more_than(2)  # more than docker-init and the main process?

    async def remove(self) -> None:
        container, self.container, self._init, self._cgroup = self.container, None, None, None
        watched, self._watched = self._watched, None
        if container is not None:
            try:
                await docker_call(container.remove, force=True)
            except SandboxError as exc:  # still watched: the janitor removes it at our exit
                if not removed_already(exc):
                    raise
        if watched is not None:
            janitor.forget(watched)
