"""execloop's sandbox images and their offline builder.

``python -m execloop.images build`` makes the base image (debootstrap + ``docker import``, or
``python:3.11-slim`` with ``--from-registry``) and the python sandbox image on top, with
``--network none`` and a host-side wheelhouse. Tags are content hashes of the inputs, so
``python_image_tag()`` names the right image without asking Docker.
"""

from __future__ import annotations

from .build import build_context, build_images, build_train_image, images_status
from .tags import ImageInputs, base_image_tag, load_inputs, python_image_tag
from .train_image import load_train_inputs, train_image_tag

__all__ = [
    "ImageInputs",
    "base_image_tag",
    "build_context",
    "build_images",
    "build_train_image",
    "images_status",
    "load_inputs",
    "load_train_inputs",
    "python_image_tag",
    "train_image_tag",
]
