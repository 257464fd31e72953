"""The exact Docker request: every security default, GPUs, workspaces, foreign images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from docker.types import DeviceRequest

from execloop.sandboxes.docker_backend import DockerSandbox, container_request, run_as_ids
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.threads import THREAD_VARIABLES


def _request(spec: SandboxSpec, *, own_image: bool = True) -> dict[str, object]:
    return container_request(
        spec,
        image="execloop/python:test",
        own_image=own_image,
        control_dir=Path("/tmp/execloop-abc"),
        labels={"org.execloop.managed": "1"},
    )


def test_security_defaults() -> None:
    request = _request(SandboxSpec(memory="512m", cpus=1.5, pids=128))
    assert request["network_mode"] == "none"
    assert request["user"] == "1000:1000"
    assert request["cap_drop"] == ["ALL"]
    assert request["security_opt"] == ["no-new-privileges:true"]  # default seccomp kept
    assert request["read_only"] is True
    assert request["pids_limit"] == 128
    assert request["mem_limit"] == request["memswap_limit"] == 512 * 2**20
    assert request["nano_cpus"] == 1_500_000_000
    assert request["init"] is True
    assert request["labels"] == {"org.execloop.managed": "1"}
    assert request["log_config"]["Config"] == {"max-size": "1m", "max-file": "1"}
    tmpfs = request["tmpfs"]
    assert isinstance(tmpfs, dict)
    assert set(tmpfs) == {"/tmp", "/workspace"}
    assert "size=536870912" in tmpfs["/workspace"] and "uid=1000" in tmpfs["/workspace"]
    assert "privileged" not in request and "device_requests" not in request
    mounts = request["mounts"]
    assert isinstance(mounts, list)
    assert [(m["Target"], m["Source"]) for m in mounts] == [("/run/execloop", "/tmp/execloop-abc")]
    assert not any("docker.sock" in str(m) for m in mounts)
    assert request["environment"] == {"HOME": "/tmp", **dict.fromkeys(THREAD_VARIABLES, "2")}


def test_gpus_are_pinned_device_requests() -> None:
    request = _request(SandboxSpec(gpus=("1", "GPU-0a1b2c3d-1111-2222-3333-444455556666")))
    (gpu,) = request["device_requests"]  # type: ignore[misc]
    assert isinstance(gpu, DeviceRequest)
    assert gpu["Driver"] == "nvidia"
    assert gpu["DeviceIDs"] == ["1", "GPU-0a1b2c3d-1111-2222-3333-444455556666"]
    assert gpu["Capabilities"] == [["gpu"]]
    assert gpu["Count"] == 0  # pinned ids, never "all"


def test_runtime_and_env_pass_through() -> None:
    request = _request(SandboxSpec(runtime="runsc", env={"SEED": "7", "MKL_NUM_THREADS": "4"}))
    assert request["runtime"] == "runsc"
    assert request["environment"] == {
        **dict.fromkeys(THREAD_VARIABLES, "1"),  # cpus=1 by default
        "HOME": "/tmp",
        "SEED": "7",
        "MKL_NUM_THREADS": "4",  # the user's own wins
    }


@pytest.mark.parametrize(("cpus", "count"), [(0.1, "1"), (1.0, "1"), (2.01, "3"), (8.0, "8")])
def test_thread_counts_are_the_cpu_limit_rounded_up(cpus: float, count: str) -> None:
    environment = _request(SandboxSpec(cpus=cpus))["environment"]
    assert isinstance(environment, dict)
    assert {name: environment[name] for name in THREAD_VARIABLES} == dict.fromkeys(
        THREAD_VARIABLES, count
    )


def test_foreign_image_gets_the_helper_bound_read_only(tmp_path: Path) -> None:
    request = _request(SandboxSpec(image="python:3.12", workspace_dir=tmp_path), own_image=False)
    command = request["command"]
    assert isinstance(command, list)
    assert command[:2] == ["python3", "/opt/execloop-host/helper.py"]
    mounts = {m["Target"]: m for m in request["mounts"]}  # type: ignore[attr-defined]
    assert mounts["/opt/execloop-host/helper.py"]["ReadOnly"] is True
    assert mounts["/opt/execloop-host/guest/session.py"]["ReadOnly"] is True  # its modules
    assert mounts["/workspace"]["Source"] == str(tmp_path)
    assert "/workspace" not in request["tmpfs"]  # type: ignore[operator]


def test_without_root_the_container_runs_as_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """So the control socket, mode 0600 and owned by the caller, is the sandbox user's too."""
    monkeypatch.setattr(os, "geteuid", lambda: 4321)
    monkeypatch.setattr(os, "getuid", lambda: 4321)
    monkeypatch.setattr(os, "getgid", lambda: 99)
    spec = SandboxSpec()
    assert run_as_ids(spec) == (4321, 99)
    request = container_request(
        spec,
        image="execloop/python:test",
        own_image=True,
        control_dir=Path("/tmp/execloop-abc"),
        labels={},
        user="4321:99",
    )
    tmpfs = request["tmpfs"]
    assert isinstance(tmpfs, dict) and "uid=4321,gid=99" in tmpfs["/workspace"]
    assert DockerSandbox(spec).socket_owner is None  # not root: nothing to hand over


def test_as_root_the_socket_goes_to_the_sandbox_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_stat = Path.stat
    owned = os.stat_result((0o40755, 0, 0, 2, 1234, 5678, 4096, 0, 0, 0))
    monkeypatch.setattr(
        Path, "stat", lambda self, **kw: owned if self == workspace else real_stat(self, **kw)
    )
    assert DockerSandbox(SandboxSpec()).socket_owner == (1000, 1000)
    assert DockerSandbox(SandboxSpec(workspace_dir=workspace)).socket_owner == (1234, 5678)


@pytest.mark.parametrize(
    ("image", "own"),
    [(None, True), ("execloop/train", True), ("execloop/train-cpu", True), ("python:3.12", False)],
)
def test_short_names_of_execloop_images_run_their_own_python_and_helper(
    image: str | None, own: bool
) -> None:
    from execloop.sandboxes.placements.container import (
        OWN_HELPER,
        OWN_PYTHON,
        ContainerPlacement,
    )

    placement = ContainerPlacement(SandboxSpec(image=image), session_id="s", label="docker")
    assert placement.own_image is own
    assert (placement.python, placement.helper) == (
        (OWN_PYTHON, OWN_HELPER) if own else ("python3", "/opt/execloop-host/helper.py")
    )
