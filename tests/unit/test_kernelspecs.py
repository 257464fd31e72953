"""The kernelspecs and the host/sandbox mapping of a kernel's connection (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.provisioning.factory import KernelProvisionerFactory

from execloop.errors import ConfigError
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.jupyter_backend import JupyterSandbox
from execloop.sandboxes.kernel_provisioners import check_placement
from execloop.sandboxes.kernelspecs import (
    KERNEL_ARGV,
    KERNEL_NAMES,
    PROVISIONER_NAMES,
    install_kernelspecs,
    kernelspec_dict,
    sandbox_command,
    sandbox_connection_info,
    sandbox_connection_path,
    socket_base,
)

HOST_INFO = {
    "transport": "ipc",
    "ip": "/tmp/execloop-kernel-abc/control/kernel",
    "shell_port": 1,
    "iopub_port": 2,
    "stdin_port": 3,
    "control_port": 4,
    "hb_port": 5,
    "signature_scheme": "hmac-sha256",
    "key": b"0123456789abcdef0123456789abcdef",
}


def test_the_sandbox_sees_the_same_connection_but_its_own_socket_path() -> None:
    inner = sandbox_connection_info(HOST_INFO)
    assert inner["ip"] == "/run/execloop/kernel"
    assert inner["key"] == "0123456789abcdef0123456789abcdef"  # text in the JSON file
    unchanged = {k: v for k, v in inner.items() if k not in ("ip", "key")}
    assert unchanged == {k: v for k, v in HOST_INFO.items() if k not in ("ip", "key")}
    assert HOST_INFO["ip"] == "/tmp/execloop-kernel-abc/control/kernel"  # input untouched
    json.dumps(inner)


def test_only_the_ipc_transport_is_rewritten() -> None:
    with pytest.raises(ValueError, match="ipc"):
        sandbox_connection_info({**HOST_INFO, "transport": "tcp"})


def test_socket_base_is_inside_the_control_directory() -> None:
    assert socket_base(Path("/tmp/x/control")) == "/tmp/x/control/kernel"


def test_the_command_runs_the_sandbox_python_on_the_sandbox_connection_file() -> None:
    spec = kernelspec_dict("docker")
    command = sandbox_command(
        spec["argv"],
        python="/opt/execloop/venv/bin/python",
        session_id="s1",
        extra_arguments=["-x"],
    )
    assert command[0] == "/opt/execloop/venv/bin/python"
    assert command[command.index("-f") + 1] == "/run/execloop/kernel-s1.json"
    assert sandbox_connection_path("s1") in command  # the session marks the command line
    assert command[-1] == "-x"


@pytest.mark.parametrize("placement", ["docker", "bubblewrap"])
def test_kernelspec_names_the_provisioner(placement: str) -> None:
    spec = kernelspec_dict(placement, config={"spec": {"memory": "512m"}})  # type: ignore[arg-type]
    provisioner = spec["metadata"]["kernel_provisioner"]
    assert provisioner == {
        "provisioner_name": PROVISIONER_NAMES[placement],  # type: ignore[index]
        "config": {"spec": {"memory": "512m"}},
    }
    assert spec["language"] == "python"
    assert spec["interrupt_mode"] == "signal"  # SIGINT through docker-init / to the kernel
    assert spec["argv"] == list(KERNEL_ARGV)
    assert spec["argv"][spec["argv"].index("-f") + 1] == "{connection_file}"
    assert spec["env"] == {}


def test_installed_kernelspecs_are_found_and_their_provisioners_registered(tmp_path: Path) -> None:
    folders = install_kernelspecs(tmp_path)
    assert [f.name for f in folders] == list(KERNEL_NAMES.values())
    manager = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    factory = KernelProvisionerFactory.instance()
    for placement, name in KERNEL_NAMES.items():
        spec = manager.get_kernel_spec(name)
        assert (
            spec.metadata["kernel_provisioner"]["provisioner_name"] == PROVISIONER_NAMES[placement]
        )
        assert factory.is_provisioner_available(spec)  # the entry point resolves


def test_a_placement_refuses_what_it_cannot_enforce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECLOOP_CGROUPS", "off")  # no cgroup: no CPU quota for bubblewrap
    with pytest.raises(ConfigError, match="cpus"):
        check_placement(SandboxSpec(backend="jupyter", placement="bubblewrap", cpus=2))
    monkeypatch.delenv("EXECLOOP_CGROUPS")
    with pytest.raises(ConfigError, match="image"):
        JupyterSandbox(SandboxSpec(backend="jupyter", placement="bubblewrap", image="x:1"))
    with pytest.raises(ConfigError, match="workspace_size"):
        JupyterSandbox(SandboxSpec(backend="jupyter", workspace_size="1g"))
    with pytest.raises(ConfigError, match="backend"):
        JupyterSandbox(SandboxSpec(backend="docker"))
    check_placement(SandboxSpec(backend="jupyter", placement="docker", cpus=2, gpus=("0",)))
