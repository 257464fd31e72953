"""What the python image carries: the packages its build recorded, read without starting it.

The build writes ``pip list --format=freeze`` to ``PACKAGES_FILE``. ``image_packages`` copies
that file out of a container that is created and never started (no process runs in it), and
removes it at once; the container carries execloop's labels and is watched by the caller's
janitor, so even a caller killed in between leaves nothing.
"""

from __future__ import annotations

import io
import re
import tarfile
import uuid
from typing import Any

import docker
import docker.errors

from execloop.errors import ImageError

__all__ = ["PACKAGES_FILE", "image_packages", "normalize_name", "parse_freeze", "requirement_names"]

PACKAGES_FILE = "/opt/execloop/venv/packages.txt"
_MAX_BYTES = 1 << 20
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize_name(name: str) -> str:
    """PEP 503: ``Scikit_Learn`` and ``scikit-learn`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text: str) -> dict[str, str]:
    """``name==version`` lines -> {normalized name: version}."""
    packages = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name:
            packages[normalize_name(name)] = version
    return packages


def requirement_names(requirements: bytes) -> list[str]:
    """The normalized names a requirements file asks for, in its order."""
    names = []
    for line in requirements.decode().splitlines():
        match = _NAME.match(line.split("#", 1)[0])
        if match:
            names.append(normalize_name(match[1]))
    return names


def image_packages(client: Any, tag: str) -> dict[str, str] | None:
    """{name: version} of what ``tag`` has installed; None for an image built before the build
    recorded it. Raises ``ImageError`` when the image is missing or Docker refuses."""
    from execloop.sandboxes import janitor
    from execloop.sandboxes.reaper import sandbox_labels

    labels = sandbox_labels(backend="inspect", session=uuid.uuid4().hex[:12])
    watched = janitor.watch(janitor.containers(labels))
    container = None
    try:
        container = client.containers.create(tag, command=["true"], labels=labels)
        chunks, _ = container.get_archive(PACKAGES_FILE)
        data = b""
        for chunk in chunks:
            data += chunk
            if len(data) > _MAX_BYTES:
                raise ImageError(f"{PACKAGES_FILE} in {tag} is larger than {_MAX_BYTES} bytes")
    except docker.errors.ImageNotFound as exc:
        raise ImageError(f"image {tag} not found; build it with `execloop images build`") from exc
    except docker.errors.NotFound:
        return None  # the image predates the record
    except docker.errors.DockerException as exc:
        raise ImageError(f"cannot read the packages of {tag}: {exc}") from exc
    finally:
        if container is None or _removed(container):
            janitor.forget(watched)  # else the janitor (or `execloop reap`) takes it
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        handle = tar.extractfile(member) if member is not None else None
        text = handle.read().decode("utf-8", "replace") if handle is not None else ""
    return parse_freeze(text)


def _removed(container: Any) -> bool:
    try:
        container.remove(force=True)
    except docker.errors.DockerException:
        return False
    return True
