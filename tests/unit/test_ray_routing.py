"""Routing tasks to Ray nodes by what their sandbox asks for, and GPU ids (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from execloop.errors import ConfigError
from execloop.runtime.ray_routing import GpuIds, NodeInfo, choose_node, gpus_wanted, with_gpus
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.placements.container import container_request
from execloop.sandboxes.reaper import LABEL_NODE, sandbox_labels, set_node_label

IMAGE = "execloop/python:abc"


def _nodes() -> list[NodeInfo]:
    return [
        NodeInfo(
            "cpu-small", cpus=2, backends=frozenset({"local", "docker"}), images=frozenset({IMAGE})
        ),
        NodeInfo("cpu-big", cpus=16, backends=frozenset({"local"})),
        NodeInfo(
            "gpu",
            cpus=8,
            gpus=("0", "1"),
            backends=frozenset({"docker"}),
            images=frozenset({IMAGE}),
        ),
    ]


def test_the_least_busy_node_that_fits_is_chosen() -> None:
    nodes = _nodes()
    spec = SandboxSpec(backend="local")
    assert choose_node(nodes, spec, image=None).node_id == "cpu-big"  # type: ignore[union-attr]
    nodes[1].running = 40  # 2.5 per CPU against cpu-small's 0
    assert choose_node(nodes, spec, image=None).node_id == "cpu-small"  # type: ignore[union-attr]


def test_cpus_gpus_backend_and_image_route_a_task() -> None:
    nodes = _nodes()
    four_cpus = SandboxSpec(backend="local", cpus=4)
    assert choose_node(nodes, four_cpus, image=None).node_id == "cpu-big"  # type: ignore[union-attr]
    gpu_spec = SandboxSpec(backend="docker", gpus=("0",))
    assert choose_node(nodes, gpu_spec, image=IMAGE).node_id == "gpu"  # type: ignore[union-attr]
    plain = SandboxSpec(backend="docker")  # equal load: the node without GPUs
    assert choose_node(nodes, plain, image=IMAGE).node_id == "cpu-small"  # type: ignore[union-attr]
    nodes[0].running = 10
    assert choose_node(nodes, plain, image=IMAGE).node_id == "gpu"  # type: ignore[union-attr]


def test_a_task_waits_while_the_gpus_that_fit_it_are_in_use() -> None:
    nodes = _nodes()
    nodes[2].gpus_in_use = 2
    assert choose_node(nodes, SandboxSpec(backend="docker", gpus=("0",)), image=IMAGE) is None


def test_a_spec_no_node_can_ever_run_says_what_each_lacks() -> None:
    with pytest.raises(ConfigError) as caught:
        choose_node(_nodes(), SandboxSpec(backend="docker", gpus=("0", "1", "2")), image=IMAGE)
    message = str(caught.value)
    assert "cpu-small: 0 GPUs < 3" in message and "cpu-big: no docker backend" in message
    assert "gpu: 2 GPUs < 3" in message
    with pytest.raises(ConfigError, match="no image other:1"):
        choose_node(_nodes()[:1], SandboxSpec(backend="docker"), image="other:1")


def test_ray_gpu_ids_become_docker_device_requests() -> None:
    gpus = GpuIds(["2", "5"])
    taken = gpus.take(1)
    assert taken == ("2",) and gpus.take(1) == ("5",)
    with pytest.raises(ConfigError, match="1 GPUs asked for, 0 free"):
        gpus.take(1)
    gpus.give_back(taken)
    spec = with_gpus(SandboxSpec(backend="docker", gpus=("0",)), gpus.take(1))
    request = container_request(
        spec, image=IMAGE, own_image=True, control_dir=Path("/tmp"), labels={}, command=["true"]
    )
    (device,) = request["device_requests"]
    assert device["DeviceIDs"] == ["2"] and device["Capabilities"] == [["gpu"]]


def test_containers_carry_the_node_label_once_a_node_actor_set_it() -> None:
    assert LABEL_NODE not in sandbox_labels(backend="docker", session="s")
    set_node_label("node-1")
    try:
        assert sandbox_labels(backend="docker", session="s")[LABEL_NODE] == "node-1"
    finally:
        set_node_label(None)


def test_a_gpu_count_or_all_is_counted_on_the_node() -> None:
    nodes = _nodes()
    two = SandboxSpec(backend="docker", gpus=2)
    assert choose_node(nodes, two, image=IMAGE).node_id == "gpu"  # type: ignore[union-attr]
    every = SandboxSpec(backend="docker", gpus="all")
    assert gpus_wanted(every, on_node=2) == 2 and gpus_wanted(every, on_node=0) == 1
    nodes[2].gpus_in_use = 1  # "all" waits until every GPU of the node is free
    assert choose_node(nodes, every, image=IMAGE) is None
