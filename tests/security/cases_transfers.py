"""Transfers: crafted tars (``..``, absolute names, links) uploaded through the host API, and
links the sandbox plants for the host's downloads and uploads to follow.

A refusal must be one ``ExecloopError`` and leave nothing behind. The weakened run does what a
naive transfer would (``tarfile.extractall`` without a filter, ``open`` through the link) in
a container, and shows it lands outside the destination.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import tempfile
from pathlib import Path

from execloop.errors import ExecloopError
from execloop.sandboxes import Sandbox

from .attacks import ESCAPED, ISOLATING, Category, Decoys, HostAttack
from .weakenings import PLAIN, SECRETS

__all__ = ["TRANSFER_ATTACKS"]

T = Category.FILES


def crafted_tar(marker: str, kind: str) -> bytes:
    """A tar whose one trick is ``kind``: ``dotdot``, ``absolute`` or ``symlink``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def add_file(name: str) -> None:
            data = b"planted"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        if kind == "dotdot":
            add_file(f"../escape-{marker}.txt")
        elif kind == "absolute":
            add_file(f"/tmp/escape-{marker}.txt")
        else:
            link = tarfile.TarInfo("hop")
            link.type, link.linkname = tarfile.SYMTYPE, "/tmp"
            archive.addfile(link)
            add_file(f"hop/escape-{marker}.txt")
    return buffer.getvalue()


# The weakened run: a naive extraction of the same tar into /workspace/sub.
NAIVE_EXTRACT = """
import base64, glob, io, os, tarfile
os.makedirs('/workspace/sub', exist_ok=True)
data = base64.b64decode({data!r})
with tarfile.open(fileobj=io.BytesIO(data)) as archive:
    archive.extractall('/workspace/sub')
landed = [p for p in glob.glob('/workspace/escape-*') + glob.glob('/tmp/escape-*')]
print('ESCAPED' if landed else 'BLOCKED', landed)
"""

FIND_ESCAPES = """
import glob
print(glob.glob('/workspace/escape-*') + glob.glob('/tmp/escape-*') + glob.glob('/escape-*'))
"""


def _naive(kind: str) -> str:
    import base64

    data = base64.b64encode(crafted_tar("proof", kind)).decode()
    return NAIVE_EXTRACT.replace("{data!r}", repr(data))


def _tar_attack(kind: str) -> HostAttack:
    async def run(sandbox: Sandbox, decoys: Decoys) -> str | None:
        await sandbox.exec("import os\nos.makedirs('sub', exist_ok=True)")
        try:
            await sandbox.upload_tar(crafted_tar(decoys.marker, kind), "sub")
            refusal = "the tar was accepted"
        except ExecloopError:
            refusal = ""
        found = await sandbox.exec(FIND_ESCAPES)
        outside = _host_escapes(sandbox, decoys.marker)
        if found.stdout.strip() != "[]" or outside:
            return f"files landed outside: {found.stdout.strip()} {outside}"
        return refusal or None

    return HostAttack(
        f"upload of a tar with a {kind} member",
        T,
        ISOLATING,
        run,
        PLAIN,
        _naive(kind),
        ESCAPED,
    )


def _host_escapes(sandbox: Sandbox, marker: str) -> list[str]:
    """Where a host-directory workspace (jupyter) would have let the tar write."""
    roots = [Path(tempfile.gettempdir())]
    workspace = getattr(sandbox, "workspace_dir", None)
    if isinstance(workspace, Path):
        roots.append(workspace.parent)
    return [str(p) for root in roots for p in root.glob(f"escape-{marker}*")]


async def planted_link_download(sandbox: Sandbox, decoys: Decoys) -> str | None:
    await sandbox.exec(f"import os\nos.symlink({decoys.secret_path!r}, 'leak')")
    leaked: list[str] = []
    for attempt in ("read_file", "download"):
        try:
            if attempt == "read_file":
                data = await sandbox.read_file("leak")
            else:
                with tempfile.TemporaryDirectory() as target:
                    paths = await sandbox.download("leak", Path(target))
                    data = b"".join(p.read_bytes() for p in paths if p.is_file())
        except ExecloopError:
            continue
        if decoys.secret.encode() in data:
            leaked.append(attempt)
    return f"the host secret came back through {leaked}" if leaked else None


LINK_READ = """
import os
os.symlink({secret_path!r}, 'leak')
print('ESCAPED' if {secret!r} in open('leak').read() else 'BLOCKED')
"""


async def dotdot_download(sandbox: Sandbox, decoys: Decoys) -> str | None:
    with tempfile.TemporaryDirectory() as target:
        try:
            await sandbox.download("../../../etc/passwd", Path(target))
            got = "a download of ../../../etc/passwd was accepted"
        except ExecloopError:
            got = ""
        written = os.listdir(target)
    return f"{got}; wrote {written}" if got or written else None


DOTDOT_READ = """
print('ESCAPED' if 'root:' in open('/workspace/../../../etc/passwd').read() else 'BLOCKED')
"""


async def upload_through_planted_link(sandbox: Sandbox, decoys: Decoys) -> str | None:
    folder = os.path.dirname(decoys.secret_path)
    name = f"planted-{decoys.marker}.txt"
    await sandbox.exec(f"import os\nos.symlink({folder!r}, 'into')")
    with contextlib.suppress(ExecloopError):  # refused, or written where it belongs
        await sandbox.upload({f"into/{name}": "planted"})
    inside = await sandbox.exec(f"import os\nprint(os.path.exists({folder + '/' + name!r}))")
    if (Path(folder) / name).exists() or inside.stdout.strip() != "False":
        return "the upload went through the planted link"
    return None


LINK_WRITE = """
import os
os.symlink(os.path.dirname({secret_path!r}), 'into')
open('into/planted-{marker}.txt', 'w').write('planted')
print('ESCAPED' if os.path.exists(os.path.dirname({secret_path!r}) + '/planted-{marker}.txt')
      else 'BLOCKED')
"""

TRANSFER_ATTACKS = [
    _tar_attack("dotdot"),
    _tar_attack("absolute"),
    _tar_attack("symlink"),
    HostAttack(
        "download of a link planted to a host secret",
        T,
        ISOLATING,
        planted_link_download,
        SECRETS,
        LINK_READ,
        ESCAPED,
    ),
    HostAttack(
        "download of ../../../etc/passwd",
        T,
        ISOLATING,
        dotdot_download,
        PLAIN,
        DOTDOT_READ,
        ESCAPED,
    ),
    HostAttack(
        "upload through a planted directory link",
        T,
        ISOLATING,
        upload_through_planted_link,
        SECRETS,
        LINK_WRITE,
        ESCAPED,
    ),
]
