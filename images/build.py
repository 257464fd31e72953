"""Build the sandbox images offline: base (debootstrap or registry), then python (or, on
demand, train) on top."""

from __future__ import annotations

import io
import logging
import re
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import docker
import docker.errors

from execloop.errors import BackendUnavailableError, ImageError

from ._run import tail
from .rootfs import build_base_image
from .tags import REGISTRY_BASE, ImageInputs, base_image_tag, load_inputs, python_image_tag
from .train_image import load_train_inputs, train_image_tag
from .wheelhouse import ensure_wheelhouse

__all__ = ["build_context", "build_images", "build_train_image", "images_status"]

_logger = logging.getLogger("execloop.images")
# The classic builder colours a step's stderr with ANSI escapes.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _safe_wheel_name(name: str) -> bool:
    return name.endswith(".whl") and "/" not in name and "\\" not in name and name[0] != "."


def build_context(inputs: ImageInputs, wheels: Path) -> BinaryIO:
    """An image's build context as a tar in an anonymous temporary file, ready for
    ``api.build`` (a file, not memory: the train image's wheels are several GB).

    Deterministic (sorted, mtime 0, root-owned, mode 0644) and holding only
    Dockerfile, requirements.txt, helper.py, guest/*.py and wheels/*.whl.
    """
    entries: list[tuple[str, bytes | Path]] = [
        ("Dockerfile", inputs.dockerfile),
        ("requirements.txt", inputs.requirements),
        *inputs.helper,
    ]
    for path in sorted(wheels.iterdir()):
        if not path.is_file() or not _safe_wheel_name(path.name):
            raise ImageError(f"unexpected file in the wheelhouse: {path}")
        entries.append((f"wheels/{path.name}", path))
    context = tempfile.TemporaryFile()  # noqa: SIM115 - the caller reads and closes it
    with tarfile.open(fileobj=context, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            if isinstance(data, bytes):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.size = data.stat().st_size
                with data.open("rb") as handle:
                    tar.addfile(info, handle)
    context.seek(0)
    return context


def _client(client: docker.DockerClient | None) -> docker.DockerClient:
    if client is not None:
        return client
    try:
        new = docker.from_env()
        new.ping()
    except docker.errors.DockerException as exc:
        raise BackendUnavailableError(
            f"cannot reach the Docker daemon: {exc}. Hint: run scripts/docker-up.sh as root"
        ) from exc
    return new


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise ImageError(f"cannot look up image {tag}: {exc}") from exc
    return True


def _stream_build(lines: Iterable[dict[str, Any]], tag: str, log: Callable[[str], None]) -> None:
    recent: deque[str] = deque(maxlen=40)
    for chunk in lines:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise ImageError(f"building {tag} failed: {detail}\n{tail(''.join(recent))}")
        if chunk.get("progressDetail"):
            continue  # pull progress bars of a registry base: noise
        text = _ANSI.sub("", str(chunk.get("stream") or chunk.get("status") or "")).rstrip()
        if text.strip():
            recent.append(text + "\n")
            log(text)


def _prune_build_stages(client: docker.DockerClient) -> None:
    # The classic builder keeps the wheel-installing stage as untagged images (~0.4 GB: the
    # wheels plus a venv). They are kept on purpose: they make a rebuild after a helper
    # change take seconds. A forced rebuild replaces them, so the old ones go first.
    client.images.prune(filters={"dangling": True, "label": "org.execloop.stage=build"})


def _build_image(
    client: docker.DockerClient,
    tag: str,
    *,
    base: str,
    inputs: ImageInputs,
    nocache: bool,
    log: Callable[[str], None],
    labels: dict[str, str] | None = None,
) -> None:
    log("filling the wheelhouse (pip download on the host)")
    wheels = ensure_wheelhouse(inputs.requirements)
    log(f"building {tag} on {base} (--network none)")
    try:
        if nocache:
            _prune_build_stages(client)
        with build_context(inputs, wheels) as context:
            stream = client.api.build(
                fileobj=context,
                custom_context=True,
                tag=tag,
                network_mode="none",
                buildargs={"BASE": base},
                labels=labels,
                rm=True,
                forcerm=True,
                nocache=nocache,
                decode=True,
            )
            _stream_build(stream, tag, log)
    except docker.errors.DockerException as exc:
        raise ImageError(f"building {tag} failed: {exc}") from exc
    if not _exists(client, tag):
        raise ImageError(f"building {tag} finished but the image is missing")


def _ensure_base(
    client: docker.DockerClient, *, from_registry: bool, force: bool, log: Callable[[str], None]
) -> str:
    if from_registry:
        return REGISTRY_BASE
    base = base_image_tag()
    if force or not _exists(client, base):
        build_base_image(client, base, log=log)
    else:
        log(f"{base} exists")
    return base


def build_images(
    client: docker.DockerClient | None = None,
    *,
    from_registry: bool = False,
    force: bool = False,
    log: Callable[[str], None] = _logger.info,
) -> list[str]:
    """Make sure the base and python images exist; return their tags, base first.

    An image whose tag exists is never rebuilt unless ``force``. The base comes from
    debootstrap + ``docker import``, or is ``python:3.11-slim`` when ``from_registry``
    (pulled by the build). Raises ImageError (with the failing output's tail and a hint) or
    BackendUnavailableError when no daemon answers.
    """
    client = _client(client)
    inputs = load_inputs()
    base = _ensure_base(client, from_registry=from_registry, force=force, log=log)
    tag = python_image_tag(inputs, from_registry=from_registry)
    if force or not _exists(client, tag):
        _build_image(client, tag, base=base, inputs=inputs, nocache=force, log=log)
    else:
        log(f"{tag} exists")
    return [base, tag]


def build_train_image(
    client: docker.DockerClient | None = None,
    *,
    variant: str = "cuda",
    from_registry: bool = False,
    force: bool = False,
    log: Callable[[str], None] = _logger.info,
) -> list[str]:
    """Make sure the base and the train image of ``variant`` (``cuda`` or ``cpu``) exist;
    return their tags, base first. Built only when asked: never by ``build_images``."""
    inputs = load_train_inputs(variant)  # an unknown variant fails before Docker is asked
    client = _client(client)
    base = _ensure_base(client, from_registry=from_registry, force=force, log=log)
    tag = train_image_tag(variant, inputs, from_registry=from_registry)
    if force or not _exists(client, tag):
        labels = {"org.execloop.image": "train", "org.execloop.torch": variant}
        _build_image(client, tag, base=base, inputs=inputs, nocache=force, log=log, labels=labels)
    else:
        log(f"{tag} exists")
    return [base, tag]


def images_status(client: docker.DockerClient, *, from_registry: bool = False) -> dict[str, bool]:
    """Tag -> present, for ``execloop doctor``."""
    tags = [python_image_tag(from_registry=from_registry)]
    if not from_registry:
        tags.insert(0, base_image_tag())
    return {tag: _exists(client, tag) for tag in tags}
