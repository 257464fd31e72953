"""The bubblewrap placement: the host's own Python in a bubblewrap sandbox, no daemon needed.

The sandbox sees a read-only ``/usr``, the host interpreter (and its venv) read-only under
``/opt/execloop`` — never at its host path, which may lie under ``/root`` or ``/work`` —, a
copy of the helper and its compiled form (``shipped_helper``), generated ``/etc/passwd``,
``group`` and ``hosts``, private size-capped tmpfs ``/tmp``, ``/dev/shm`` and ``/workspace``
(or a bound host directory), and the control directory at ``/run/execloop``. Root is
read-only; there is no network but ``lo``, no host process, no host environment variable.
Limits: where the host allows it, the whole tree is in a cgroup of its own (``cgroups``:
memory, pids, CPU quota), entered by a prefix before the first bwrap; the other limits (and,
without a cgroup, memory and processes) are rlimits (``process.rlimit_argv``).

Who the code runs as: uid 1000 inside, in a user namespace of its own that cannot create
further ones (``--disable-userns``). When execloop is not root, bwrap maps that user to the
caller. When it *is* root, bwrap's own mapping would make the code host root, for which the
kernel never enforces ``RLIMIT_NPROC`` (fork bombs would be unbounded). So a first bwrap, as
root, only binds the Python prefixes (which may be readable by root alone) into the private
state directory, and ``setpriv`` starts the real, unprivileged bwrap as host uid 1000 (or the
owner of the workspace), like the container's user. That first bwrap binds only what the
second needs (``outer_argv``), never the whole tree: a recursive bind of ``/`` copies every
mount on the host, and a Docker overlay mounted or unmounted meanwhile made it fail
(``Can't bind mount /oldroot/...: Invalid argument``).

``--unshare-pid`` makes bwrap's init pid 1 of a private PID namespace, so the helper's
``--reap-all`` only ever sees the sandbox's own processes, and killing that init from the host
ends the whole namespace. bwrap's init forwards no signal: an interrupt goes to the host
process that must get it (``signal(..., process=...)``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import anyio
import psutil

from execloop.errors import BackendUnavailableError, ConfigError
from execloop.sandboxes.base import GUEST_CONTROL_DIR
from execloop.sandboxes.cgroup_host import sandbox_cgroup
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.placements.base import GUEST_WORKSPACE, Launch, workspace_owner
from execloop.sandboxes.placements.process import ProcessPlacement, rlimit_argv
from execloop.sandboxes.placements.python_layout import (
    GUEST_PYTHON,
    GUEST_VENV,
    PythonLayout,
    host_python,
    python_layout,
)
from execloop.sandboxes.placements.shipped_helper import HELPER, helper_files
from execloop.sandboxes.spec import GUEST_CHECKPOINTS, SANDBOX_UID, SandboxSpec
from execloop.sandboxes.threads import with_thread_limits

__all__ = [
    "BubblewrapPlacement",
    "HELPER",
    "HELPER_CODE",
    "PythonLayout",
    "Tools",
    "available_tools",
    "bwrap_argv",
    "find_tools",
    "host_ids",
    "host_python",
    "outer_argv",
    "prepare_state_dir",
    "probe_argv",
    "python_layout",
    "system_argv",
]

HELPER_CODE = "/opt/execloop/helper.pyc"  # what runs: compiled once by the host, not per start
# Paths inside the state directory: staged mount points (root only) and generated files.
_STAGED = {
    "python": "mnt/python",
    "venv": "mnt/venv-lib",
    "workspace": "mnt/workspace",
    "checkpoints": "mnt/checkpoints",
}
_WRITABLE = ("workspace", "checkpoints")
_ETC = {
    "passwd": f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:execloop sandbox:/tmp:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": f"sandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
}
_USERNS_FIX = (
    "the local backend needs bubblewrap >= 0.8 and unprivileged user namespaces: "
    "`sysctl -w user.max_user_namespaces=15000` (Debian < 11 also "
    "`sysctl -w kernel.unprivileged_userns_clone=1`, Ubuntu >= 23.10 "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`); then run `execloop doctor`"
)


@dataclass(frozen=True)
class Tools:
    """Host paths of the programs the backend runs (prlimit runs inside: it must be in /usr)."""

    bwrap: str
    setpriv: str
    prlimit: str


def find_tools() -> Tools:
    found = {name: shutil.which(name) for name in ("bwrap", "setpriv", "prlimit")}
    if found["bwrap"] is None:
        raise BackendUnavailableError(
            "bubblewrap is not installed: `apt-get install bubblewrap` (see `execloop doctor`)"
        )
    missing = [name for name, path in found.items() if path is None]
    prlimit = os.path.realpath(found["prlimit"] or "")
    if missing or not prlimit.startswith("/usr/"):
        raise BackendUnavailableError(
            f"util-linux's {', '.join(missing) or 'prlimit'} is missing (or not under /usr): "
            "`apt-get install util-linux`"
        )
    return Tools(bwrap=str(found["bwrap"]), setpriv=str(found["setpriv"]), prlimit=prlimit)


def host_ids(spec: SandboxSpec) -> tuple[int, int] | None:
    """The host uid/gid to run as when execloop is root; ``None`` when it is not (bwrap then
    maps the sandbox user to the caller). A bound workspace decides, as in the docker backend."""
    workspace = spec.workspace_dir
    if os.geteuid() != 0:
        if workspace is not None and not os.access(workspace, os.W_OK | os.X_OK):
            raise ConfigError(f"workspace {workspace} is not writable by uid {os.geteuid()}")
        return None
    return (SANDBOX_UID, SANDBOX_UID) if workspace is None else workspace_owner(workspace)


def system_argv() -> list[str]:
    """bwrap options recreating this host's top-level system links (merged /usr) or dirs."""
    argv: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return argv


Bind = tuple[str, str, str]  # a bwrap bind option, its host source, its destination


def outer_argv(
    tools: Tools, *, system: Sequence[str], binds: Sequence[Bind], run_as: tuple[int, int]
) -> list[str]:
    """The first, root bwrap (see the module docstring): a root of its own holding only what
    the second one needs — the programs and their libraries, ``/dev`` and ``/proc`` (from
    which the second mounts its own), ``/tmp`` (where it mounts its root), ``binds`` —
    then ``setpriv`` to ``run_as``."""
    every: list[Bind] = [
        ("--ro-bind", "/usr", "/usr"),
        ("--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"),
        # --dev-bind: a plain bind is nodev, and the inner /dev/null would be unusable
        ("--dev-bind", "/dev", "/dev"),
        ("--dev-bind", "/proc", "/proc"),
        *binds,
    ]
    # bwrap as root makes a destination's missing parents 0700: the second stage could not
    # pass them, so they are made first, 0755 (bwrap's --dir), parents before children
    targets = [PurePath(target) for _, _, target in every]
    parents = {
        parent
        for target in targets
        for parent in target.parents
        if len(parent.parts) > 1 and not any(parent.is_relative_to(t) for t in targets)
    }
    argv = [tools.bwrap, *system]
    for parent in sorted(parents | {PurePath("/tmp")}, key=lambda path: (len(path.parts), path)):
        argv += ["--dir", str(parent)]
    for option, source, target in every:
        argv += [option, source, target]
    uid, gid = run_as
    ids = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
    return [*argv, "--die-with-parent", "--", tools.setpriv, *ids, "--"]


def probe_argv(tools: Tools, *, as_root: bool) -> list[str]:
    """A minimal sandbox with the same user-namespace setup as ``bwrap_argv``."""
    argv = [tools.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
    argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--ro-bind", "/", "/"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--", "sh", "-c", "true >/dev/null"]
    if as_root:
        ids = (SANDBOX_UID, SANDBOX_UID)
        argv = [*outer_argv(tools, system=system_argv(), binds=[], run_as=ids), *argv]
    return argv


def prepare_state_dir(state_dir: Path, python: PythonLayout, *, staged: bool) -> None:
    """Write the generated files (and the staged mount points) that ``bwrap_argv`` names."""
    state_dir.chmod(0o711)  # the sandbox user reaches the fixed names, never lists the dir
    etc = state_dir / "etc"
    etc.mkdir(mode=0o755)
    files = {etc / name: text for name, text in _ETC.items()}
    if python.pyvenv_cfg is not None:
        files[state_dir / "pyvenv.cfg"] = python.pyvenv_cfg
    for path, text in files.items():
        path.write_text(text)
        path.chmod(0o644)
    for name, content in helper_files().items():  # helper.py, guest/*.py and their pycs
        path = state_dir / name
        for parent in reversed(path.relative_to(state_dir).parents[:-1]):
            (state_dir / parent).mkdir(mode=0o755, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)
    if staged:
        for relative in _STAGED.values():
            (state_dir / relative).mkdir(parents=True)
            (state_dir / relative).chmod(0o755)


def _environment(given: Mapping[str, str], python: PythonLayout) -> dict[str, str]:
    env = dict(given)
    if python.library_path is not None:
        extra = given.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = f"{python.library_path}:{extra}" if extra else python.library_path
    return env


def bwrap_argv(
    spec: SandboxSpec,
    *,
    command: Sequence[str],
    env: Mapping[str, str],
    control_dir: Path,
    state_dir: Path,
    python: PythonLayout,
    tools: Tools,
    system: Sequence[str],
    run_as: tuple[int, int] | None,
    cgroup: Cgroup | None,
) -> list[str]:
    """The whole command line that runs ``command`` inside (pure). ``run_as`` is the host
    uid/gid when execloop is root: then a first bwrap stages the host paths into
    ``state_dir`` and drops to that user. With a ``cgroup``, the command enters it first and
    memory and processes are left to it."""
    sources: dict[str, Path | None] = {
        "python": python.base_prefix,
        "venv": python.venv_lib,
        "workspace": spec.workspace_dir,
        "checkpoints": spec.checkpoint_dir,
    }
    outer: list[str] = []
    if run_as is not None:
        binds: list[Bind] = [("--ro-bind", str(state_dir), str(state_dir))]
        binds.append(("--bind", str(control_dir), str(control_dir)))
        for key, source in list(sources.items()):
            if source is not None:
                staged = state_dir / _STAGED[key]
                binds.append(
                    ("--bind" if key in _WRITABLE else "--ro-bind", str(source), str(staged))
                )
                sources[key] = staged
        outer = outer_argv(tools, system=system, binds=binds, run_as=run_as)

    argv = [tools.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
    argv += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv"]
    for name, value in _environment(env, python).items():
        argv += ["--setenv", name, value]
    argv += ["--ro-bind", "/usr", "/usr", *system]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for name in _ETC:
        argv += ["--ro-bind", str(state_dir / "etc" / name), f"/etc/{name}"]
    argv += ["--ro-bind", str(sources["python"]), GUEST_PYTHON]
    if sources["venv"] is not None:
        argv += ["--ro-bind", str(sources["venv"]), f"{GUEST_VENV}/lib"]
        argv += ["--ro-bind", str(state_dir / "pyvenv.cfg"), f"{GUEST_VENV}/pyvenv.cfg"]
        argv += ["--symlink", python.executable, f"{GUEST_VENV}/bin/python"]
    argv += ["--ro-bind", str(state_dir / "helper.py"), HELPER]
    argv += ["--ro-bind", str(state_dir / "helper.pyc"), HELPER_CODE]
    argv += ["--ro-bind", str(state_dir / "guest"), f"{os.path.dirname(HELPER)}/guest"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(spec.tmp_size), "--tmpfs", "/dev/shm"]
    argv += ["--size", str(spec.tmp_size), "--tmpfs", "/tmp"]
    if sources["workspace"] is not None:
        argv += ["--bind", str(sources["workspace"]), GUEST_WORKSPACE]
    else:
        argv += ["--size", str(spec.workspace_size), "--tmpfs", GUEST_WORKSPACE]
    if sources["checkpoints"] is not None:
        argv += ["--bind", str(sources["checkpoints"]), GUEST_CHECKPOINTS]
    argv += ["--bind", str(control_dir), GUEST_CONTROL_DIR, "--remount-ro", "/"]
    argv += ["--chdir", GUEST_WORKSPACE]
    limits = rlimit_argv(spec, prlimit=tools.prlimit, in_cgroup=cgroup is not None)
    enter = [] if cgroup is None else cgroup.enter_argv()
    return [*enter, *outer, *argv, "--", *limits, *command]


_checked: Tools | None = None
_probing = threading.Lock()  # a hundred sandboxes starting at once run one probe, not a hundred


async def available_tools() -> Tools:
    """The tools, once a probe sandbox has worked in this process (a failed probe is retried)."""
    if _checked is not None:
        return _checked
    return await anyio.to_thread.run_sync(_probe_once)


def _probe_once() -> Tools:
    global _checked
    with _probing:
        if _checked is None:
            tools = find_tools()
            argv = probe_argv(tools, as_root=os.geteuid() == 0)
            done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True)
            if done.returncode != 0:
                error = done.stderr.decode("utf-8", "replace").strip()[-500:]
                raise BackendUnavailableError(f"bubblewrap failed ({error}); {_USERNS_FIX}")
            _checked = tools
        return _checked


class BubblewrapPlacement(ProcessPlacement):
    """A bubblewrap sandbox (see the module docstring)."""

    kind = "bubblewrap"
    own_pid_namespace = True

    def __init__(self, spec: SandboxSpec, *, session_id: str) -> None:
        super().__init__(spec, session_id=session_id)
        self._layout = host_python()
        self._run_as = host_ids(spec)

    @property
    def python(self) -> str:
        return self._layout.interpreter

    @property
    def owner(self) -> tuple[int, int] | None:
        return self._run_as

    @property
    def helper(self) -> str:
        return HELPER_CODE

    def guest_control_dir(self, control_dir: Path) -> str:
        return GUEST_CONTROL_DIR

    def guest_workspace(self, workspace: Path | None) -> str:
        return GUEST_WORKSPACE

    async def launch(self, what: Launch) -> None:
        spec = self.spec
        if what.workspace != spec.workspace_dir:
            spec = spec.model_copy(update={"workspace_dir": what.workspace})
            self._run_as = host_ids(spec)
        tools = await available_tools()
        argv = await anyio.to_thread.run_sync(self._prepare_bwrap, spec, what, tools)
        await self._start(argv, env={})  # bwrap sets the sandbox's environment itself

    def _prepare_bwrap(self, spec: SandboxSpec, what: Launch, tools: Tools) -> list[str]:
        """The state directory, the cgroup and the command line: file work, kept off the event
        loop (the fork has a thread of its own: ``ProcessPlacement._start``)."""
        state_dir = self.make_state_dir()
        prepare_state_dir(state_dir, self._layout, staged=self._run_as is not None)
        self.cgroup = sandbox_cgroup(spec, tag=self.session_id)
        limited = self.cgroup is not None and "cpu" in self.cgroup.dirs  # a CPU quota
        return bwrap_argv(
            spec,
            command=what.command,
            env=with_thread_limits(what.env, cpus=spec.cpus if limited else None),
            control_dir=what.control_dir,
            state_dir=state_dir,
            python=self._layout,
            tools=tools,
            system=system_argv(),
            run_as=self._run_as,
            cgroup=self.cgroup,
        )

    async def crowded(self, main: psutil.Process | None) -> bool:
        # the sandbox's own /proc lists its PID namespace only: bwrap's init and the main one
        if main is None:
            return False
        with contextlib.suppress(OSError):
            return sum(name.isdigit() for name in os.listdir(f"/proc/{main.pid}/root/proc")) > 2
        return True
