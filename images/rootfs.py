"""The base image without a registry: debootstrap a root file system, ``docker import`` it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from execloop.errors import ImageError

from ._run import run_tool
from .tags import BASE_INCLUDE, BASE_RECIPE, BASE_SUITE, BASE_VARIANT

__all__ = [
    "DEFAULT_MIRROR",
    "MIRROR_ENV",
    "build_base_image",
    "debian_mirror",
    "debootstrap_command",
]

MIRROR_ENV = "EXECLOOP_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
_HINT = (
    "run scripts/docker-up.sh as root (it installs debootstrap), check that the Debian mirror "
    f"is reachable (set {MIRROR_ENV} to another one), or build with --from-registry"
)


def debian_mirror() -> str:
    """The Debian mirror: ``$EXECLOOP_DEBIAN_MIRROR`` or deb.debian.org."""
    return os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR


def debootstrap_command(target: Path, *, mirror: str) -> list[str]:
    """The debootstrap call for the base recipe (see ``tags.BASE_*``)."""
    return [
        "debootstrap",
        f"--variant={BASE_VARIANT}",
        f"--include={','.join(BASE_INCLUDE)}",
        BASE_SUITE,
        str(target),
        mirror,
    ]


def build_base_image(client: docker.DockerClient, tag: str, *, log: Callable[[str], None]) -> None:
    """debootstrap into a temp dir, tar it, import it as ``tag``; the temp dir always goes."""
    if os.geteuid() != 0:
        raise ImageError(f"debootstrap needs root. Hint: {_HINT}")
    work = Path(tempfile.mkdtemp(prefix="execloop-rootfs-"))
    rootfs, tarball = work / "rootfs", work / "rootfs.tar"
    try:
        mirror = debian_mirror()
        log(f"debootstrap {BASE_SUITE} from {mirror} (about a minute)")
        run_tool(debootstrap_command(rootfs, mirror=mirror), hint=_HINT)
        # Package lists and .debs only cost space, and the lists name the mirror.
        for cache in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
        log("packing the root file system")
        # GNU tar keeps devices, hard links and xattr-free modes; numeric owners because the
        # host's user names do not apply inside the image.
        run_tool(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
            hint="install GNU tar and check free space in the temp dir ($TMPDIR)",
        )
        log(f"docker import as {tag}")
        _import(client, tarball, tag)
    finally:
        _remove_tree(work)


def _import(client: docker.DockerClient, tarball: Path, tag: str) -> None:
    repository, _, version = tag.rpartition(":")
    try:
        # A path (not a stream) so the SDK posts it without its 60 s read timeout.
        out = client.api.import_image(
            src=str(tarball), repository=repository, tag=version, changes=list(BASE_RECIPE)
        )
    except docker.errors.DockerException as exc:
        raise ImageError(f"docker import of {tag} failed: {exc}") from exc
    for line in str(out).splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise ImageError(f"docker import of {tag} failed: {message['error']}")


def _remove_tree(path: Path) -> None:
    # debootstrap mounts /proc and /sys inside the target and can leave them mounted when it
    # fails; unmount first so rmtree never walks into the host's /proc or /sys.
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
