"""Build the sandbox images offline: base (debootstrap or registry), then python on top."""

from __future__ import annotations

import io
import logging
import re
import tarfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import docker
import docker.errors

from execloop.errors import BackendUnavailableError, ImageError

from ._run import tail
from .rootfs import build_base_image
from .tags import REGISTRY_BASE, ImageInputs, base_image_tag, load_inputs, python_image_tag
from .wheelhouse import ensure_wheelhouse

__all__ = ["build_context", "build_images", "images_status"]

_logger = logging.getLogger("execloop.images")
# The classic builder colours a step's stderr with ANSI escapes.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _safe_wheel_name(name: str) -> bool:
    return name.endswith(".whl") and "/" not in name and "\\" not in name and name[0] != "."


def build_context(inputs: ImageInputs, wheels: Path) -> io.BytesIO:
    """The python image's build context as an in-memory tar, ready for ``api.build``.

    Deterministic (sorted, mtime 0, root-owned, mode 0644) and holding only
    Dockerfile, requirements.txt, helper.py and wheels/*.whl.
    """
    entries: list[tuple[str, bytes]] = [
        ("Dockerfile", inputs.dockerfile),
        ("requirements.txt", inputs.requirements),
        ("helper.py", inputs.helper),
    ]
    for path in sorted(wheels.iterdir()):
        if not path.is_file() or not _safe_wheel_name(path.name):
            raise ImageError(f"unexpected file in the wheelhouse: {path}")
        entries.append((f"wheels/{path.name}", path.read_bytes()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


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
    # wheels plus a venv). They are kept on purpose: they make a rebuild after a helper.py
    # change take seconds. A forced rebuild replaces them, so the old ones go first.
    client.images.prune(filters={"dangling": True, "label": "org.execloop.stage=build"})


def _build_python(
    client: docker.DockerClient,
    tag: str,
    *,
    base: str,
    inputs: ImageInputs,
    nocache: bool,
    log: Callable[[str], None],
) -> None:
    log("filling the wheelhouse (pip download on the host)")
    wheels = ensure_wheelhouse(inputs.requirements)
    log(f"building {tag} on {base} (--network none)")
    try:
        if nocache:
            _prune_build_stages(client)
        stream = client.api.build(
            fileobj=build_context(inputs, wheels),
            custom_context=True,
            tag=tag,
            network_mode="none",
            buildargs={"BASE": base},
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
    if from_registry:
        base = REGISTRY_BASE
    else:
        base = base_image_tag()
        if force or not _exists(client, base):
            build_base_image(client, base, log=log)
        else:
            log(f"{base} exists")
    tag = python_image_tag(inputs, from_registry=from_registry)
    if force or not _exists(client, tag):
        _build_python(client, tag, base=base, inputs=inputs, nocache=force, log=log)
    else:
        log(f"{tag} exists")
    return [base, tag]


def images_status(client: docker.DockerClient, *, from_registry: bool = False) -> dict[str, bool]:
    """Tag -> present, for ``execloop doctor``."""
    tags = [python_image_tag(from_registry=from_registry)]
    if not from_registry:
        tags.insert(0, base_image_tag())
    return {tag: _exists(client, tag) for tag in tags}
