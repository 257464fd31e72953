"""Image tags computed from the images' inputs, without Docker.

A tag is ``execloop/<name>:<hash12>`` where the hash covers every input that shapes the
image, so a changed Dockerfile, requirement or helper gives a new tag and an unchanged one
is never rebuilt. The hashes are pure functions of bytes and strings (testable without
patching): ``load_inputs()`` reads the shipped files, the rest only hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from execloop.sandboxes.helper import shipped_files

__all__ = [
    "BASE_INCLUDE",
    "BASE_RECIPE",
    "BASE_REPO",
    "BASE_SUITE",
    "BASE_VARIANT",
    "BUILDER_VERSION",
    "ImageInputs",
    "PYTHON_REPO",
    "REGISTRY_BASE",
    "base_image_tag",
    "base_input_hash",
    "helper_parts",
    "load_inputs",
    "python_image_tag",
    "python_input_hash",
]

# Bump when the builder changes how images come out (context layout, import changes, ...).
BUILDER_VERSION = "1"

BASE_REPO = "execloop/base"
PYTHON_REPO = "execloop/python"
# The base image's recipe: debootstrap arguments minus the mirror (a mirror serves the same
# suite, so it must not change the tag).
BASE_SUITE = "bookworm"
BASE_VARIANT = "minbase"
BASE_INCLUDE = ("ca-certificates", "python3", "python3-venv")
# What ``docker import`` is told to add; part of the recipe, so part of the hash.
BASE_RECIPE = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "LABEL org.execloop.image=base",
    'CMD ["/bin/sh"]',
)
# The base used instead of debootstrap where a registry is reachable (``from_registry``).
REGISTRY_BASE = "python:3.11-slim"


@dataclass(frozen=True)
class ImageInputs:
    """The bytes that go into the python image's build context (besides the wheels)."""

    dockerfile: bytes
    requirements: bytes
    helper: tuple[tuple[str, bytes], ...]  # helper.py and guest/*.py: (path, bytes), sorted


def load_inputs() -> ImageInputs:
    """Read the shipped Dockerfile, requirements and in-sandbox helper from the package."""
    python_dir = files("execloop.images") / "python"
    return ImageInputs(
        dockerfile=(python_dir / "Dockerfile").read_bytes(),
        requirements=(python_dir / "requirements.txt").read_bytes(),
        helper=tuple((name, Path(source).read_bytes()) for name, source in shipped_files()),
    )


def _digest(parts: list[tuple[str, bytes]]) -> str:
    # Length-prefixed, named fields in a fixed order: no two input sets hash alike.
    h = hashlib.sha256()
    for name, data in parts:
        for field in (name.encode(), data):
            h.update(len(field).to_bytes(8, "big"))
            h.update(field)
    return h.hexdigest()


def base_input_hash(
    *,
    suite: str = BASE_SUITE,
    variant: str = BASE_VARIANT,
    include: tuple[str, ...] = BASE_INCLUDE,
    recipe: tuple[str, ...] = BASE_RECIPE,
) -> str:
    """sha256 over the base image's recipe (the mirror is deliberately not part of it)."""
    return _digest(
        [
            ("builder", BUILDER_VERSION.encode()),
            ("suite", suite.encode()),
            ("variant", variant.encode()),
            ("include", ",".join(sorted(include)).encode()),
            ("recipe", "\n".join(recipe).encode()),
        ]
    )


def python_input_hash(inputs: ImageInputs, *, base: str) -> str:
    """sha256 over the python image's inputs; ``base`` is the base tag or registry image."""
    return _digest(
        [
            ("builder", BUILDER_VERSION.encode()),
            ("base", base.encode()),
            ("dockerfile", inputs.dockerfile),
            ("requirements", inputs.requirements),
            *helper_parts(inputs),
        ]
    )


def helper_parts(inputs: ImageInputs) -> list[tuple[str, bytes]]:
    """The helper's files as named hash fields (``helper.py``, ``guest/<module>``)."""
    return [(f"helper:{name}", data) for name, data in inputs.helper]


def base_image_tag() -> str:
    """``execloop/base:<hash12>`` of the debootstrap base image."""
    return f"{BASE_REPO}:{base_input_hash()[:12]}"


def python_image_tag(inputs: ImageInputs | None = None, *, from_registry: bool = False) -> str:
    """``execloop/python:<hash12>``; built on ``python:3.11-slim`` if ``from_registry``."""
    base = REGISTRY_BASE if from_registry else base_image_tag()
    digest = python_input_hash(inputs or load_inputs(), base=base)
    return f"{PYTHON_REPO}:{digest[:12]}"
