"""The ``docker`` backend: one hardened, long-lived container per session.

Every default of DESIGN.md's "Security defaults" is set in ``container_request`` (a pure
function, so tests can pin the exact request). The docker SDK blocks, so each call goes
through a worker thread; its errors are mapped to execloop's in ``_docker_call`` only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from execloop.errors import (
    BackendUnavailableError,
    ConfigError,
    ImageError,
    SandboxError,
    SandboxGoneError,
    SandboxStartError,
)
from execloop.sandboxes import janitor
from execloop.sandboxes.base import ExitReason
from execloop.sandboxes.reaper import LABEL_SESSION, reap_orphans, sandbox_labels
from execloop.sandboxes.spec import SANDBOX_UID, SandboxSpec
from execloop.sandboxes.stateful import SOCKET_NAME, HelperSandbox

__all__ = [
    "DockerSandbox",
    "container_request",
    "default_client",
    "reap_orphans_once",
    "removed_already",
    "run_as_ids",
]

T = TypeVar("T")
_OWN_HELPER = "/opt/execloop/helper.py"
_OWN_PYTHON = "/opt/execloop/venv/bin/python"
_MOUNTED_HELPER = "/opt/execloop-host/helper.py"
_CONTROL_DIR = "/run/execloop"

log = logging.getLogger("execloop.sandboxes.docker")
_reaped = threading.Event()
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


async def reap_orphans_once(client: Any) -> None:
    """Remove the containers of dead owners, once per process (before its first sandbox)."""
    if not _reaped.is_set():
        _reaped.set()
        await _docker_call(reap_orphans, client)


def default_image() -> str:
    from execloop.images import python_image_tag

    return python_image_tag()


def container_request(
    spec: SandboxSpec,
    *,
    image: str,
    own_image: bool,
    control_dir: Path,
    labels: dict[str, str],
    user: str = f"{SANDBOX_UID}:{SANDBOX_UID}",
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``: the whole hardened request."""
    from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

    mounts = [Mount(target=_CONTROL_DIR, source=str(control_dir), type="bind")]
    tmpfs = {"/tmp": f"rw,nosuid,nodev,size={spec.tmp_size},mode=1777"}
    if spec.workspace_dir is not None:
        mounts.append(Mount(target="/workspace", source=str(spec.workspace_dir), type="bind"))
    else:
        uid, _, gid = user.partition(":")
        tmpfs["/workspace"] = (
            f"rw,nosuid,nodev,size={spec.workspace_size},uid={uid},gid={gid or uid},mode=0755"
        )
    if own_image:
        command = [_OWN_PYTHON, _OWN_HELPER]
    else:  # any image with python3 works: the helper is bound in read-only
        helper_file = Path(__file__).with_name("helper.py")
        mounts.append(
            Mount(target=_MOUNTED_HELPER, source=str(helper_file), type="bind", read_only=True)
        )
        command = ["python3", _MOUNTED_HELPER]
    command += [f"{_CONTROL_DIR}/{SOCKET_NAME}", "--workspace", "/workspace", "--reap-all"]
    command += ["--session", labels.get(LABEL_SESSION, "")]
    request: dict[str, Any] = {
        "image": image,
        "command": command,
        "user": user,
        "working_dir": "/workspace",
        "environment": {"HOME": "/tmp", **spec.env},
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
        request["device_requests"] = [
            DeviceRequest(driver="nvidia", device_ids=list(spec.gpus), capabilities=[["gpu"]])
        ]
    if spec.runtime:
        request["runtime"] = spec.runtime
    return request


def run_as_ids(spec: SandboxSpec) -> tuple[int, int]:
    """Who the container runs as: the owner of a bound workspace (so the sandbox can write to
    it), else uid 1000 when execloop is root, else the caller (who then owns its sockets)."""
    path = spec.workspace_dir
    if path is not None:
        stat = path.stat()
        if stat.st_uid == 0:
            raise ConfigError(
                f"workspace {path} belongs to root and the sandbox never runs as root; "
                f"`chown {SANDBOX_UID}:{SANDBOX_UID} {path}` (or use a directory you own)"
            )
        return stat.st_uid, stat.st_gid
    if os.geteuid() == 0:
        return SANDBOX_UID, SANDBOX_UID
    return os.getuid(), os.getgid()


async def _docker_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking docker SDK call in a thread, mapping its errors to execloop's."""
    import docker.errors
    import requests.exceptions

    try:
        return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))
    except docker.errors.ImageNotFound as exc:
        raise ImageError(
            f"image not found: {exc.explanation}; build it with `execloop images build`"
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


def removed_already(exc: SandboxError) -> bool:
    """Whether a failed container removal means it is gone or going: no such container, or
    Docker's 409 Conflict for a removal already in progress."""
    return isinstance(exc, SandboxGoneError) or exc.status_code == HTTPStatus.CONFLICT


class DockerSandbox(HelperSandbox):
    """A stateful Python session in a hardened container (see ``container_request``)."""

    backend_name = "docker"

    def __init__(self, spec: SandboxSpec | None = None, *, client: Any = None) -> None:
        super().__init__(spec or SandboxSpec())
        self._client = client
        self.container: Any = None
        self._watched: janitor.Resource | None = None

    @property
    def socket_owner(self) -> tuple[int, int] | None:
        return run_as_ids(self.spec) if os.geteuid() == 0 else None

    async def _launch(self, socket_dir: Path) -> None:
        if self._client is None:
            self._client = await anyio.to_thread.run_sync(default_client)
        await reap_orphans_once(self._client)
        own_image = self.spec.image is None
        image = default_image() if own_image else str(self.spec.image)
        uid, gid = run_as_ids(self.spec)
        user = f"{uid}:{gid}"
        labels = sandbox_labels(backend="docker", session=self.session_id)
        request = container_request(
            self.spec,
            image=image,
            own_image=own_image,
            control_dir=socket_dir,
            labels=labels,
            user=user,
        )
        # before the create: if this process dies at any point from here, the container goes
        self._watched = janitor.watch(janitor.containers(labels))
        self.container = await _docker_call(self._client.containers.create, **request)
        log.debug("created container %s for session %s", self.container.short_id, self.session_id)
        try:
            await _docker_call(self.container.start)
        except SandboxError as exc:
            raise SandboxStartError(
                f"container {self.container.short_id} did not start: {exc}"
            ) from exc

    async def _inspect_state(self) -> dict[str, Any]:
        if self.container is None:
            return {}
        try:
            await _docker_call(self.container.reload)
        except SandboxError:
            return {}
        state: dict[str, Any] = self.container.attrs.get("State", {})
        return state

    async def _is_running(self) -> bool:
        return bool((await self._inspect_state()).get("Running"))

    async def _startup_logs(self) -> str:
        if self.container is None:
            return ""
        try:
            logs: bytes = await _docker_call(self.container.logs, tail=50)
        except SandboxError:
            return ""
        return logs.decode("utf-8", "replace")

    async def _death_reason(self) -> ExitReason:
        # The helper's exit and Docker's record of it race; give Docker a moment.
        for _ in range(20):
            state = await self._inspect_state()
            if not state.get("Running", False):
                return ExitReason.OOM if state.get("OOMKilled") else ExitReason.KILLED
            await anyio.sleep(0.05)
        return ExitReason.KILLED

    async def _kill(self) -> None:
        if self.container is None:
            return
        with contextlib.suppress(SandboxError):  # already dead: that is what we wanted
            await _docker_call(self.container.kill)

    async def _remove(self) -> None:
        container, self.container = self.container, None
        watched, self._watched = self._watched, None
        if container is not None:
            try:
                await _docker_call(container.remove, force=True)
            except SandboxError as exc:  # still watched: the janitor removes it at our exit
                if not removed_already(exc):
                    raise
        if watched is not None:
            janitor.forget(watched)
