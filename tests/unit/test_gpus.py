"""GPUs: the spellings `gpus` accepts, the exact DeviceRequests docker-py sends to the daemon
(read off the wire from a loopback fake of the Engine API), and the refusals: a daemon without
an NVIDIA runtime (before anything is created) and backends that cannot pass GPUs through."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import anyio
import docker
import pytest
from click.testing import CliRunner

from execloop.errors import BackendUnavailableError, ConfigError
from execloop.runtime.cli import cli
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.placements.base import Launch
from execloop.sandboxes.placements.container import (
    ContainerPlacement,
    check_gpu_support,
    container_request,
)
from execloop.sandboxes.restricted_backend import RestrictedSandbox

UUID = "GPU-0a1b2c3d-1111-2222-3333-444455556666"


class _FakeEngine(BaseHTTPRequestHandler):
    """Just enough of the Docker Engine API 1.41 for a create: the bodies are recorded."""

    runtimes: ClassVar[dict[str, Any]] = {}
    created: ClassVar[list[dict[str, Any]]] = []

    def _reply(self, status: int, body: object = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.endswith("/info"):
            self._reply(200, {"Runtimes": self.runtimes})
        elif "/containers/json" in self.path:
            self._reply(200, [])
        else:
            self._reply(200, {"Id": "c0ffee", "State": {"Running": True}})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "/containers/create" in self.path:
            type(self).created.append(json.loads(body))
            self._reply(201, {"Id": "c0ffee", "Warnings": []})
        else:
            self._reply(204)

    def do_DELETE(self) -> None:
        self._reply(204)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[tuple[type[_FakeEngine], docker.DockerClient]]:
    handler = type("Engine", (_FakeEngine,), {"created": [], "runtimes": {"runc": {}}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{server.server_port}", version="1.41")
    try:
        yield handler, client
    finally:
        client.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("given", "held"),
    [
        ("all", "all"),
        (2, 2),
        ("3", 3),  # a bare number is a count, as for docker run --gpus
        ("device=0,1", ("0", "1")),
        (f'"device={UUID}"', (UUID,)),
        (["1"], ("1",)),
        ("", ()),
    ],
)
def test_gpus_spellings(given: object, held: object) -> None:
    assert SandboxSpec(gpus=given).gpus == held


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (0, "a GPU count is at least 1"),
        ("0", "pin GPU 0 with 'device=0'"),
        (("all",), "use gpus='all'"),
        ("device=first", "neither an index nor a GPU/MIG UUID"),
        (True, "not a boolean"),
    ],
)
def test_gpus_refusals_say_how(bad: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        SandboxSpec(gpus=bad)


@pytest.mark.parametrize(
    ("gpus", "wire"),
    [
        ("all", {"Count": -1, "DeviceIDs": []}),
        (2, {"Count": 2, "DeviceIDs": []}),
        (("1", UUID), {"Count": 0, "DeviceIDs": ["1", UUID]}),
    ],
)
def test_docker_receives_the_exact_device_request(
    engine: tuple[type[_FakeEngine], docker.DockerClient], gpus: object, wire: dict[str, Any]
) -> None:
    handler, client = engine
    request = container_request(
        SandboxSpec(gpus=gpus),
        image="execloop/python:test",
        own_image=True,
        control_dir=Path("/tmp/execloop-abc"),
        labels={"org.execloop.managed": "1"},
    )
    client.containers.create(**request)
    (body,) = handler.created
    assert body["HostConfig"]["DeviceRequests"] == [
        {"Driver": "nvidia", **wire, "Capabilities": [["gpu"]], "Options": {}}
    ]


def test_no_device_request_without_gpus(
    engine: tuple[type[_FakeEngine], docker.DockerClient],
) -> None:
    handler, client = engine
    request = container_request(
        SandboxSpec(), image="x", own_image=True, control_dir=Path("/tmp/x"), labels={}
    )
    client.containers.create(**request)
    assert "DeviceRequests" not in handler.created[0]["HostConfig"]


def test_a_gpu_task_is_refused_before_create_where_the_daemon_has_no_nvidia_runtime(
    engine: tuple[type[_FakeEngine], docker.DockerClient], tmp_path: Path
) -> None:
    handler, client = engine
    placement = ContainerPlacement(
        SandboxSpec(gpus="all"), session_id="s1", label="docker", client=client
    )
    launch = Launch(command=["true"], control_dir=tmp_path, workspace=None, env={})
    with pytest.raises(BackendUnavailableError, match="no NVIDIA runtime") as caught:
        anyio.run(placement.launch, launch)
    assert "nvidia-container-toolkit" in str(caught.value)
    assert "runtimes: runc" in str(caught.value)
    assert handler.created == []  # nothing was created, so nothing can leak


def test_the_nvidia_runtime_or_its_hook_lets_gpus_through() -> None:
    check_gpu_support({"Runtimes": {"nvidia": {}, "runc": {}}}, hook=None)
    check_gpu_support({"Runtimes": {"runc": {}}}, hook="/usr/bin/nvidia-container-runtime-hook")
    with pytest.raises(BackendUnavailableError, match="runtimes: none"):
        check_gpu_support({}, hook=None)


def test_backends_without_gpus_refuse_them_clearly() -> None:
    with pytest.raises(ConfigError, match="restricted backend cannot honour gpus='all'"):
        RestrictedSandbox(SandboxSpec(backend="restricted", gpus="all"))


def test_cli_gpus_flag_reaches_the_spec_and_is_refused_where_unsupported(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    result = CliRunner().invoke(cli, ["run", "--backend", "local", "--gpus", "2", str(script)])
    assert result.exit_code != 0
    assert "cannot honour gpus=2" in result.output
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(cli, ["run", "--gpus", "0", str(script)])
    assert bad.exit_code == 2
    assert "--gpus" in bad.output and "pin GPU 0 with 'device=0'" in bad.output
