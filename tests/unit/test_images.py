"""The offline image builder without Docker: tags, build context, wheelhouse, tool errors."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from execloop.errors import ConfigError, ImageError
from execloop.images import ImageInputs, build_context, load_inputs, python_image_tag
from execloop.images._run import run_tool
from execloop.images.build import _stream_build
from execloop.images.names import own_image_tag
from execloop.images.rootfs import DEFAULT_MIRROR, debian_mirror, debootstrap_command
from execloop.images.tags import base_image_tag, base_input_hash, python_input_hash
from execloop.images.train_image import (
    TORCH_PINS,
    load_train_inputs,
    train_image_tag,
    train_input_hash,
)
from execloop.images.wheelhouse import (
    MARKER,
    ensure_wheelhouse,
    pip_download_command,
    wheelhouse_dir,
)

MODULES = [
    "execloop.images",
    "execloop.images.__main__",
    "execloop.images._run",
    "execloop.images.build",
    "execloop.images.names",
    "execloop.images.rootfs",
    "execloop.images.tags",
    "execloop.images.train_image",
    "execloop.images.wheelhouse",
]
INPUTS = ImageInputs(
    dockerfile=b"FROM x\n",
    requirements=b"numpy\n",
    helper=(("guest/__init__.py", b""), ("helper.py", b"print(1)\n")),
)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_exists(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for attr in module.__all__:
        assert hasattr(module, attr), attr


def test_tags_are_deterministic_and_well_formed() -> None:
    assert python_image_tag() == python_image_tag(load_inputs())
    assert re.fullmatch(r"execloop/python:[0-9a-f]{12}", python_image_tag())
    assert re.fullmatch(r"execloop/base:[0-9a-f]{12}", base_image_tag())
    assert python_image_tag(INPUTS) == python_image_tag(INPUTS)


@pytest.mark.parametrize("field", ["dockerfile", "requirements"])
def test_python_tag_changes_with_each_input(field: str) -> None:
    changed = dataclasses.replace(INPUTS, **{field: getattr(INPUTS, field) + b"#\n"})
    assert python_image_tag(changed) != python_image_tag(INPUTS)


def test_python_tag_changes_with_each_helper_module() -> None:
    for index, (name, data) in enumerate(INPUTS.helper):
        files = list(INPUTS.helper)
        files[index] = (name, data + b"#\n")
        changed = dataclasses.replace(INPUTS, helper=tuple(files))
        assert python_image_tag(changed) != python_image_tag(INPUTS), name
    renamed = (("guest/other.py", b""), *INPUTS.helper[1:])  # a module's name counts too
    assert python_image_tag(dataclasses.replace(INPUTS, helper=renamed)) != python_image_tag(INPUTS)


def test_python_tag_depends_on_the_base() -> None:
    assert python_image_tag(INPUTS, from_registry=True) != python_image_tag(INPUTS)
    assert python_input_hash(INPUTS, base="a") != python_input_hash(INPUTS, base="b")


def test_fields_cannot_bleed_into_each_other() -> None:
    a = ImageInputs(dockerfile=b"ab", requirements=b"c", helper=b"")
    b = ImageInputs(dockerfile=b"a", requirements=b"bc", helper=b"")
    assert python_input_hash(a, base="x") != python_input_hash(b, base="x")


def test_base_hash_covers_the_recipe_not_the_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    assert base_input_hash(include=("b", "a")) == base_input_hash(include=("a", "b"))
    assert base_input_hash(suite="trixie") != base_input_hash()
    assert base_input_hash(include=("python3",)) != base_input_hash()
    before = base_image_tag()
    monkeypatch.setenv("EXECLOOP_DEBIAN_MIRROR", "http://mirror.example/debian")
    assert base_image_tag() == before
    assert debian_mirror() == "http://mirror.example/debian"
    monkeypatch.delenv("EXECLOOP_DEBIAN_MIRROR")
    assert debian_mirror() == DEFAULT_MIRROR


def test_debootstrap_command() -> None:
    cmd = debootstrap_command(Path("/tmp/r"), mirror="http://m/debian")
    assert cmd == [
        "debootstrap",
        "--variant=minbase",
        "--include=ca-certificates,python3,python3-venv",
        "bookworm",
        "/tmp/r",
        "http://m/debian",
    ]


def _wheels(tmp_path: Path, *names: str) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in names:
        (wheels / name).write_bytes(b"PK" + name.encode())
    return wheels


def test_build_context_holds_exactly_the_inputs(tmp_path: Path) -> None:
    wheels = _wheels(tmp_path, "b-1-py3-none-any.whl", "a-1-cp311-cp311-manylinux_2_28_x86_64.whl")
    with tarfile.open(fileobj=build_context(INPUTS, wheels)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == [
            "Dockerfile",
            "requirements.txt",
            "guest/__init__.py",
            "helper.py",
            "wheels/a-1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "wheels/b-1-py3-none-any.whl",
        ]
        for member in members:
            assert member.isfile()
            assert member.mode == 0o644
            assert (member.uid, member.gid, member.mtime) == (0, 0, 0)
            assert not member.name.startswith("/")
            assert ".." not in member.name.split("/")
        helper = tar.extractfile("helper.py")
        assert helper is not None
        assert helper.read() == dict(INPUTS.helper)["helper.py"]
    assert build_context(INPUTS, wheels).read() == build_context(INPUTS, wheels).read()


@pytest.mark.parametrize("name", ["notes.txt", ".hidden.whl"])
def test_build_context_refuses_strays_in_the_wheelhouse(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageError, match="unexpected file"):
        build_context(INPUTS, _wheels(tmp_path, "a-1-py3-none-any.whl", name))


@pytest.mark.parametrize(
    ("machine", "arch"), [("x86_64", "x86_64"), ("amd64", "x86_64"), ("aarch64", "aarch64")]
)
def test_pip_download_targets_the_image_not_the_host(machine: str, arch: str) -> None:
    cmd = pip_download_command(Path("req.txt"), Path("out"), machine=machine)
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd
    pairs = list(itertools.pairwise(cmd))
    for flag in [("--python-version", "3.11"), ("--implementation", "cp"), ("--abi", "cp311")]:
        assert flag in pairs
    platforms = [value for key, value in pairs if key == "--platform"]
    assert f"manylinux2014_{arch}" in platforms
    assert f"manylinux_2_17_{arch}" in platforms
    assert f"manylinux_2_28_{arch}" in platforms
    assert f"manylinux_2_36_{arch}" in platforms  # bookworm's glibc
    assert f"manylinux_2_37_{arch}" not in platforms
    assert all(p.endswith(f"_{arch}") for p in platforms)
    assert cmd[-4:] == ["--dest", "out", "-r", "req.txt"]


def test_pip_download_rejects_unknown_machines() -> None:
    with pytest.raises(ImageError, match="riscv64"):
        pip_download_command(Path("r"), Path("o"), machine="riscv64")


def test_wheelhouse_dir_is_keyed_by_requirements_and_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    here = wheelhouse_dir(b"numpy\n", machine="x86_64")
    assert here.parent == tmp_path / "execloop" / "wheelhouse"
    assert here == wheelhouse_dir(b"numpy\n", machine="amd64")
    assert here != wheelhouse_dir(b"numpy\n", machine="aarch64")
    assert here != wheelhouse_dir(b"pandas\n", machine="x86_64")


def test_complete_wheelhouse_is_reused_without_pip(tmp_path: Path) -> None:
    done = wheelhouse_dir(b"numpy\n", machine="x86_64", root=tmp_path)
    (done / "wheels").mkdir(parents=True)
    (done / MARKER).write_text("numpy-2-cp311-cp311-manylinux_2_28_x86_64.whl\n")
    assert ensure_wheelhouse(b"numpy\n", machine="x86_64", root=tmp_path) == done / "wheels"


def test_run_tool_reports_output_tail_and_hint() -> None:
    script = "import sys; print('\\n'.join(map(str, range(100))), file=sys.stderr); sys.exit(3)"
    with pytest.raises(ImageError) as info:
        run_tool([sys.executable, "-c", script], hint="do the thing")
    message = str(info.value)
    assert "exit code 3" in message
    assert "\n99\n" in message
    assert "\n5\n" not in message
    assert message.endswith("Hint: do the thing")


def test_run_tool_missing_binary() -> None:
    with pytest.raises(ImageError, match=r"not installed\. Hint: install it"):
        run_tool(["execloop-no-such-tool"], hint="install it")


def test_shipped_dockerfile_fits_the_classic_builder_and_the_sandbox() -> None:
    text = load_inputs().dockerfile.decode()
    assert text.count("FROM ${BASE}") == 2  # multi-stage: wheels stay in the first stage
    assert "COPY --chmod" not in text  # BuildKit only
    assert "RUN --mount" not in text  # BuildKit only
    for line in [
        "ARG BASE",
        "USER 1000:1000",
        "WORKDIR /workspace",
        "LABEL org.execloop.image=python",
        "COPY helper.py /opt/execloop/helper.py",
        "COPY guest/ /opt/execloop/guest/",
    ]:
        assert line in text
    requirements = load_inputs().requirements.decode()
    for package in ["numpy", "pandas", "pyarrow", "jsonschema", "pytest"]:
        assert re.search(rf"^{package}>=", requirements, re.MULTILINE), package


def test_build_log_is_streamed_and_a_failure_carries_its_tail() -> None:
    chunks: list[dict[str, Any]] = [
        {"stream": "Step 1/2 : FROM base\n"},
        {"status": "Downloading", "progressDetail": {"current": 1}},
        {"stream": "\x1b[91mls: cannot access '/nope'\n\x1b[0m"},
        {"error": "returned a non-zero code: 2", "errorDetail": {"message": "RUN failed: 2"}},
    ]
    lines: list[str] = []
    with pytest.raises(ImageError) as info:
        _stream_build(chunks, "execloop/python:x", lines.append)
    assert lines == ["Step 1/2 : FROM base", "ls: cannot access '/nope'"]
    assert str(info.value) == (
        "building execloop/python:x failed: RUN failed: 2\n"
        "Step 1/2 : FROM base\nls: cannot access '/nope'"
    )


def test_train_image_tags_per_variant_and_short_names() -> None:
    cuda, cpu = train_image_tag("cuda"), train_image_tag("cpu")
    assert re.fullmatch(r"execloop/train:[0-9a-f]{12}", cuda)
    assert re.fullmatch(r"execloop/train-cpu:[0-9a-f]{12}", cpu)
    assert train_image_tag() == cuda
    assert train_image_tag("cpu", from_registry=True) != cpu
    assert own_image_tag("execloop/train") == cuda
    assert own_image_tag("execloop/train-cpu") == cpu
    assert own_image_tag("execloop/python") == own_image_tag(None) == python_image_tag()
    assert own_image_tag(cuda) is None  # a hashed tag runs as given
    assert own_image_tag("python:3.12") is None
    with pytest.raises(ConfigError, match="unknown torch variant 'rocm'"):
        train_image_tag("rocm")


def test_train_requirements_extend_the_python_image_with_one_torch_pin() -> None:
    python = load_inputs()
    for variant, pin in TORCH_PINS.items():
        inputs = load_train_inputs(variant)
        text = inputs.requirements.decode()
        assert text.startswith(python.requirements.decode().rstrip("\n"))
        assert [line for line in text.splitlines() if line.startswith("torch")] == [pin]
        for package in ["transformers", "peft", "trl", "datasets", "accelerate", "safetensors"]:
            assert re.search(rf"^{package}>=", text, re.MULTILINE), package
        assert (inputs.dockerfile, inputs.helper) == (python.dockerfile, python.helper)
    # the python image's own tag is untouched by the train image
    assert train_input_hash(INPUTS, base="b", variant="cpu") != python_input_hash(INPUTS, base="b")
