from __future__ import annotations

import pytest
from pydantic import ValidationError

from execloop.errors import ConfigError
from execloop.sandboxes.spec import SandboxSpec, coerce_spec, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * 2**20),
        ("2g", 2 * 2**30),
        ("1.5GiB", int(1.5 * 2**30)),
        ("64k", 65536),
        (4096, 4096),
        ("100", 100),
        ("1 MB", 2**20),
    ],
)
def test_parse_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1g", "1x", True, 1.5])
def test_parse_bytes_refuses_nonsense(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_bytes(bad)


def test_spec_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="memory"):
        SandboxSpec(memory="lots")
    with pytest.raises(ValidationError, match="invalid environment variable names"):
        SandboxSpec(env={"1BAD": "x"})
    with pytest.raises(ValidationError, match="GPU id"):
        SandboxSpec(gpus=("all",))
    with pytest.raises(ValidationError, match="not an existing directory"):
        SandboxSpec(workspace_dir="/nonexistent/execloop")
    with pytest.raises(ValidationError, match="output_limit_bytes"):
        SandboxSpec(max_output_bytes="2m", output_limit_bytes="1m")
    with pytest.raises(ValidationError, match="Extra inputs"):
        SandboxSpec(memroy="1g")  # type: ignore[call-arg]


def test_spec_is_frozen_and_keyed() -> None:
    spec = SandboxSpec(memory="512m", env={"A": "1"})
    with pytest.raises(ValidationError):
        spec.memory = 1  # type: ignore[misc]
    assert spec.key() == SandboxSpec(memory=512 * 2**20, env={"A": "1"}).key()
    assert spec.key() != SandboxSpec(memory="1g", env={"A": "1"}).key()


@pytest.mark.parametrize("field", ["timeout_s", "start_timeout_s", "cpus"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_spec_times_and_cpus_are_finite(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        SandboxSpec(**{field: value})
    assert caught.value.errors()[0]["type"] == "finite_number"


@pytest.mark.parametrize(
    "image",
    ["python", "python:3.11-slim", "localhost:5000/team/x:1", "ghcr.io/org/x@sha256:" + "a" * 64],
)
def test_spec_accepts_image_references(image: str) -> None:
    assert SandboxSpec(image=image).image == image


@pytest.mark.parametrize("image", ["bad image name!", "Python:3", "x::1", "", "a/", "-a"])
def test_spec_refuses_what_is_not_an_image_reference(image: str) -> None:
    with pytest.raises(ValidationError, match="is not an image reference; use NAME"):
        SandboxSpec(image=image)


@pytest.mark.parametrize("key", ["team", "com.example.team", "a", "x/y_z-1", "A.B"])
def test_spec_accepts_docker_label_keys(key: str) -> None:
    assert SandboxSpec(labels={key: "v"}).labels == {key: "v"}


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "invalid label key"),
        ("-team", "invalid label key"),
        ("team.", "invalid label key"),
        ("has space", "invalid label key"),
        ("org.execloop.owner", "reserved namespace org.execloop."),
        ("org.execloop.session", "reserved namespace org.execloop."),
        ("com.docker.compose.project", "reserved namespace com.docker."),
    ],
)
def test_spec_refuses_bad_or_reserved_label_keys(key: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        coerce_spec({"labels": {key: "v"}})


@pytest.mark.parametrize("backend", ["local", "restricted"])
def test_backends_without_containers_refuse_labels(backend: str) -> None:
    from execloop import create_sandbox

    with pytest.raises(ConfigError, match="cannot honour labels"):
        create_sandbox({"backend": backend, "labels": {"com.example.team": "ml"}})
