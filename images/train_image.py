"""The train image: the python image's packages plus PyTorch, transformers, PEFT, TRL, datasets,
accelerate and safetensors, in one venv built like the python image's (same Dockerfile).

Two variants differ only in their torch wheel. ``cuda`` (the default, ``execloop/train``) is
PyPI's Linux wheel, which brings the CUDA runtime wheels (several GB): one image then serves
CPU and GPU hosts. ``cpu`` (``execloop/train-cpu``) is a CPU-only wheel, found where pip's
configuration offers one (a find-links folder, or the PyTorch CPU index as an extra index):
small and quick to build, for CI and CPU-only hosts. The torch pins differ because each is the
release whose wheel of that kind this project builds with offline.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Literal, get_args

from .tags import (
    BUILDER_VERSION,
    REGISTRY_BASE,
    ImageInputs,
    _digest,
    base_image_tag,
    helper_parts,
    load_inputs,
)

__all__ = [
    "TORCH_PINS",
    "TRAIN_REPOS",
    "TorchVariant",
    "load_train_inputs",
    "train_image_tag",
    "train_input_hash",
]

TorchVariant = Literal["cuda", "cpu"]
TORCH_PINS: dict[TorchVariant, str] = {"cuda": "torch==2.14.1", "cpu": "torch==2.13.0"}
TRAIN_REPOS: dict[TorchVariant, str] = {"cuda": "execloop/train", "cpu": "execloop/train-cpu"}


def _variant(variant: str) -> TorchVariant:
    if variant not in TORCH_PINS:
        from execloop.errors import ConfigError

        raise ConfigError(f"unknown torch variant {variant!r}: use one of {get_args(TorchVariant)}")
    return variant


def load_train_inputs(variant: str = "cuda") -> ImageInputs:
    """The python image's Dockerfile and helper; its requirements, the train ones, and the
    variant's torch pin in one requirements file (one venv, one resolution)."""
    python = load_inputs()
    train = (files("execloop.images") / "train" / "requirements.txt").read_bytes()
    pin = TORCH_PINS[_variant(variant)].encode()
    requirements = python.requirements.rstrip(b"\n") + b"\n" + train.rstrip(b"\n") + b"\n"
    return ImageInputs(
        dockerfile=python.dockerfile,
        requirements=requirements + pin + b"\n",
        helper=python.helper,
    )


def train_input_hash(inputs: ImageInputs, *, base: str, variant: str) -> str:
    """sha256 over the train image's inputs (its own field names: never a python image's)."""
    return _digest(
        [
            ("builder", BUILDER_VERSION.encode()),
            ("image", b"train"),
            ("variant", _variant(variant).encode()),
            ("base", base.encode()),
            ("dockerfile", inputs.dockerfile),
            ("requirements", inputs.requirements),
            *helper_parts(inputs),
        ]
    )


def train_image_tag(
    variant: str = "cuda", inputs: ImageInputs | None = None, *, from_registry: bool = False
) -> str:
    """``execloop/train:<hash12>`` (cuda) or ``execloop/train-cpu:<hash12>``."""
    base = REGISTRY_BASE if from_registry else base_image_tag()
    digest = train_input_hash(inputs or load_train_inputs(variant), base=base, variant=variant)
    return f"{TRAIN_REPOS[_variant(variant)]}:{digest[:12]}"
