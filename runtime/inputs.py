"""The one owner of the input layout: what host files a sandbox gets, under which names.

``Inputs.collect`` walks the host inputs once and decides everything: a file input lands as its
name, a directory input as ``dirname/…`` keeping relative paths. The same object then describes
the inputs to the model, stages a copy of them, and that copy is what every sandbox receives —
each attempt's and the re-verification's — so the prompt, the upload and the restore agree by
construction.

Host inputs are read the way ``sandboxes/workspace.py`` reads a workspace: from directory
descriptors, one component at a time, with ``O_NOFOLLOW``. The path a user names may be a link
(they chose it); inside an input directory a link is copied as its target's content only if the
target is a regular file inside that directory. Fifos, sockets and devices are refused by name
and never opened for reading (opening a fifo blocks). Sizes and file counts are checked before
anything is copied; bytes are copied in chunks, never whole files into memory.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import shutil
import stat
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from execloop.errors import ConfigError
from execloop.runtime import bounds
from execloop.runtime.host_files import DIR_FLAGS, READ_FLAGS, human_bytes, kind_of
from execloop.sandboxes.base import Sandbox
from execloop.sandboxes.spec import SandboxSpec
from execloop.sandboxes.tempdirs import make_temp_dir, remove_temp_dir

__all__ = [
    "InputFile",
    "Inputs",
    "MAX_INPUT_FILES",
    "SCRIPT_NAME",
    "StagedInputs",
]

# One reserved name for the script, whichever entry point runs it (`execloop run`, the loop):
# one rule for users, and one input set is valid everywhere.
SCRIPT_NAME = "main.py"
MAX_INPUT_FILES = 20_000  # files and directories, over all inputs of one run or task
_MAX_DEPTH = 64
_DESCRIBED_PER_INPUT = 50
_CHUNK = 1 << 20


def _not_an_input(display: str, mode: int) -> ConfigError:
    return ConfigError(
        f"{display} is {kind_of(mode)}; only regular files and directories can be inputs"
    )


@dataclass(frozen=True)
class InputFile:
    """One regular file of the inputs: where it lands and where its bytes are on the host."""

    name: str  # the workspace path: ``a.csv`` or ``data/sub/a.csv``
    display: str  # the host path as the user named it, for messages
    root: Path  # a link-free host directory ...
    parts: tuple[str, ...]  # ... and the components below it that reach the content
    size: int

    def open(self) -> int:
        """A read descriptor on the content, reached without following any link."""
        fd = os.open(self.root, DIR_FLAGS)
        try:
            for part in self.parts[:-1]:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            opened = os.open(self.parts[-1], READ_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise ConfigError(
                f"input {self.display} changed while being read ({exc.strerror or exc}); run again"
            ) from exc
        finally:
            os.close(fd)
        info = os.fstat(opened)
        if not stat.S_ISREG(info.st_mode) or info.st_size != self.size:
            os.close(opened)
            raise ConfigError(f"input {self.display} changed while being read; run again")
        return opened

    def preview(self) -> str:
        """The first lines of a UTF-8 text file, for the prompt; ``(binary)`` otherwise."""
        with os.fdopen(self.open(), "rb") as handle:
            raw = handle.read(bounds.INPUT_PREVIEW_CHARS * 4)
        try:  # an incremental decoder accepts a character cut at the end of the chunk
            text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        except UnicodeDecodeError:
            return "    (binary)"
        if "\x00" in text:
            return "    (binary)"
        lines = bounds.head(text, bounds.INPUT_PREVIEW_CHARS).splitlines()[:6]
        return "\n".join(f"    | {line}" for line in lines)


class _Walk:
    """Collects the entries of the inputs, refusing what may not be an input."""

    def __init__(self, max_files: int) -> None:
        self.max_files = max_files
        self.files: list[InputFile] = []
        self.dirs: list[str] = []
        self.owner: dict[str, str] = {}  # top-level workspace name -> the input that takes it

    def count(self, display: str) -> None:
        if len(self.files) + len(self.dirs) >= self.max_files:
            raise ConfigError(
                f"the inputs hold more than {self.max_files:,} files and directories "
                f"(at {display}); pack them into an archive and pass that instead"
            )

    def take(self, name: str, display: str) -> None:
        if name == SCRIPT_NAME:
            raise ConfigError(
                f"input {display} would land as {SCRIPT_NAME}, the name execloop reserves for "
                f"the script; rename it"
            )
        if name in self.owner:
            raise ConfigError(
                f"inputs {self.owner[name]} and {display} would both land as {name!r} in the "
                f"workspace; rename one, or put them in one directory and pass that"
            )
        self.owner[name] = display

    def add(self, path: Path) -> None:
        display = str(path)
        name = Path(os.path.abspath(path)).name
        real = Path(os.path.realpath(path))  # the user's own link is followed: they chose it
        if not name:
            raise ConfigError(f"input {display}: name a file or a directory below /")
        _check_name(name, display)
        try:
            mode = os.stat(real, follow_symlinks=False).st_mode
        except OSError as exc:
            raise ConfigError(f"input {display} does not exist ({exc.strerror})") from exc
        self.take(name, display)
        self.count(display)
        if stat.S_ISREG(mode):
            size = os.stat(real, follow_symlinks=False).st_size
            self.files.append(InputFile(name, display, real.parent, (real.name,), size))
        elif stat.S_ISDIR(mode):
            self.dirs.append(name)
            with _refusals(display):
                fd = os.open(real, DIR_FLAGS)
            try:
                self._walk_dir(fd, real, (), name, display)
            finally:
                os.close(fd)
        else:
            raise _not_an_input(display, mode)

    def _walk_dir(self, fd: int, root: Path, rel: tuple[str, ...], name: str, display: str) -> None:
        if len(rel) >= _MAX_DEPTH:
            raise ConfigError(f"input {display} nests deeper than {_MAX_DEPTH} directories")
        with _refusals(os.path.join(display, *rel)):
            entries = sorted(
                (entry.name, entry.stat(follow_symlinks=False)) for entry in os.scandir(fd)
            )
        for entry, info in entries:
            parts = (*rel, entry)
            shown = os.path.join(display, *parts)
            _check_name(entry, shown)
            self.count(shown)
            target = "/".join((name, *parts))
            if stat.S_ISDIR(info.st_mode):
                self.dirs.append(target)
                with _refusals(shown):
                    child = os.open(entry, DIR_FLAGS, dir_fd=fd)
                try:
                    self._walk_dir(child, root, parts, name, display)
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode):
                self.files.append(InputFile(target, shown, root, parts, info.st_size))
            elif stat.S_ISLNK(info.st_mode):
                self.files.append(self._link(fd, root, parts, target, shown, display))
            else:
                raise _not_an_input(shown, info.st_mode)

    @staticmethod
    def _link(
        fd: int, root: Path, parts: tuple[str, ...], target: str, shown: str, display: str
    ) -> InputFile:
        """A link inside an input directory: its target's content if that is a regular file
        inside the same directory, else refused naming the link and where it points."""
        with _refusals(shown):
            points_to = os.readlink(parts[-1], dir_fd=fd)
        resolved = Path(os.path.realpath(root.joinpath(*parts)))
        if resolved != root and root not in resolved.parents:
            raise ConfigError(
                f"{shown} is a symbolic link to {points_to} ({resolved}), outside {display}; "
                f"links may only point inside their input: copy the file in instead"
            )
        try:
            info = os.stat(resolved, follow_symlinks=False)
        except OSError as exc:
            raise ConfigError(
                f"{shown} is a symbolic link to {points_to}, which does not exist; "
                f"remove the link or restore its target"
            ) from exc
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(
                f"{shown} is a symbolic link to {points_to}, which is {kind_of(info.st_mode)}; "
                f"only links to regular files are followed inside an input"
            )
        return InputFile(target, shown, root, resolved.relative_to(root).parts, info.st_size)


def _check_name(name: str, display: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{display!r} has a file name that is not valid UTF-8; rename it"
        ) from None


@contextlib.contextmanager
def _refusals(display: str) -> Iterator[None]:
    """OS errors while reading an input become one ``ConfigError`` naming it."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{display} was replaced by a symbolic link; run again") from exc
        raise ConfigError(f"cannot read input {display}: {exc.strerror or exc}") from exc


@dataclass(frozen=True)
class Inputs:
    """The host inputs of one run or task, checked, with their workspace layout."""

    paths: tuple[Path, ...]  # absolute, as named (a link the user named is kept as named)
    files: tuple[InputFile, ...]
    dirs: tuple[str, ...]  # every directory the inputs create, parents first

    @classmethod
    def collect(cls, paths: Sequence[Path], *, max_files: int = MAX_INPUT_FILES) -> Inputs:
        """Walk ``paths`` and decide their layout; ``ConfigError`` for anything refused."""
        walk = _Walk(max_files)
        for path in paths:
            walk.add(Path(path))
        return cls(
            paths=tuple(Path(os.path.abspath(path)) for path in paths),
            files=tuple(walk.files),
            dirs=tuple(walk.dirs),
        )

    @property
    def total_bytes(self) -> int:
        return sum(item.size for item in self.files)

    @property
    def names(self) -> tuple[str, ...]:
        """The top-level workspace names the inputs take."""
        return tuple(Path(os.path.abspath(path)).name for path in self.paths)

    def check_fits(self, spec: SandboxSpec, *, extra_bytes: int = 0) -> None:
        """Refuse inputs the sandbox's workspace cannot hold, before anything is copied."""
        needed = self.total_bytes + extra_bytes
        if spec.workspace_dir is None:
            room, what = (
                spec.workspace_size,
                f"its workspace_size of {human_bytes(spec.workspace_size)}",
            )
        else:
            fs = os.statvfs(spec.workspace_dir)
            room, what = fs.f_bavail * fs.f_frsize, f"the free space in {spec.workspace_dir}"
        if needed > room:
            biggest = max(self.files, key=lambda item: item.size, default=None)
            largest = (
                f" (largest: {biggest.display}, {human_bytes(biggest.size)})" if biggest else ""
            )
            raise ConfigError(
                f"the inputs total {human_bytes(needed)}{largest}, more than the sandbox can "
                f"hold: {what}; raise workspace_size, or use a host directory as the workspace "
                f"(execloop run --workspace DIR)"
            )

    def describe(self) -> str:
        """The listing the model sees: workspace names and sizes, first lines of text files."""
        if not self.paths:
            return "Input files: none."
        lines = ["Input files (in the working directory):"]
        for name in self.names:
            under = [f for f in self.files if f.name == name or f.name.startswith(f"{name}/")]
            for item in under[:_DESCRIBED_PER_INPUT]:
                lines.append(f"- {item.name} ({item.size} bytes)")
                lines.append(item.preview())
            if len(under) > _DESCRIBED_PER_INPUT:
                rest = under[_DESCRIBED_PER_INPUT:]
                size = human_bytes(sum(item.size for item in rest))
                lines.append(f"- … {len(rest)} more files under {name}/ ({size})")
            if not under:
                lines.append(f"- {name}/ (an empty directory)")
        return "\n".join(lines)

    @contextlib.asynccontextmanager
    async def staged(self) -> AsyncIterator[StagedInputs]:
        """A private copy of the inputs, laid out as in the workspace; removed afterwards.

        Staged once, uploaded to every sandbox: every attempt and the re-verification see the
        same bytes, even if the host files change meanwhile. Copied in a worker thread."""
        if not self.paths:
            yield StagedInputs(None)
            return
        folder = make_temp_dir("inputs")
        try:
            await anyio.to_thread.run_sync(self._copy_into, folder)
            yield StagedInputs(folder)
        finally:  # shielded: a cancelled task must not leave its staged copy behind
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(remove_temp_dir, folder)

    def _copy_into(self, folder: Path) -> None:
        for name in self.dirs:
            (folder / name).mkdir(mode=0o755)
        for item in self.files:
            _copy(item, folder / item.name)

    def prune_conflicts(self, outputs: Path) -> None:
        """Remove from a host copy of a workspace what would stop the inputs being restored
        over it: a file where an input has a directory, a directory where it has a file."""
        for name in self.dirs:
            _remove_unless(outputs / name, directory=True)
        for item in self.files:
            _remove_unless(outputs / item.name, directory=False)


def _remove_unless(path: Path, *, directory: bool) -> None:
    try:
        mode = os.stat(path, follow_symlinks=False).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode) and not directory:
        shutil.rmtree(path)
    elif not stat.S_ISDIR(mode) and directory:
        path.unlink()


def _copy(item: InputFile, dest: Path) -> None:
    """Copy one input file in chunks; it must still have the size it was listed with."""
    copied = 0
    with os.fdopen(item.open(), "rb") as source, dest.open("xb") as target:
        while chunk := source.read(_CHUNK):
            copied += len(chunk)
            if copied > item.size:
                break
            target.write(chunk)
        mode = os.fstat(source.fileno()).st_mode
    if copied != item.size:
        raise ConfigError(f"input {item.display} changed while being copied; run again")
    dest.chmod(0o755 if mode & 0o111 else 0o644)


@dataclass(frozen=True)
class StagedInputs:
    """The staged copy: what every sandbox of the run or task receives."""

    folder: Path | None  # None when there are no inputs

    async def upload(self, sandbox: Sandbox) -> None:
        if self.folder is not None:
            await sandbox.upload(self.folder)
