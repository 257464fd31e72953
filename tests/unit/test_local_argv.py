"""The local backend's pure parts: the exact bwrap command line, the interpreter's relocation,
the refused spec fields (no bubblewrap is run here)."""

from __future__ import annotations

import importlib.util
import marshal
import os
from pathlib import Path

import pytest

from execloop.errors import BackendUnavailableError, ConfigError
from execloop.sandboxes import helper
from execloop.sandboxes.cgroup_host import ENV
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.local_backend import LocalSandbox
from execloop.sandboxes.placements.bubblewrap import (
    HELPER,
    PythonLayout,
    Tools,
    bwrap_argv,
    host_ids,
    prepare_state_dir,
    probe_argv,
    python_layout,
)
from execloop.sandboxes.placements.process import rlimit_argv
from execloop.sandboxes.placements.shipped_helper import helper_files
from execloop.sandboxes.spec import SandboxSpec

TOOLS = Tools(bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv", prlimit="/usr/bin/prlimit")
PYENV = Path("/root/.pyenv/versions/3.11.7")
STATE = Path("/tmp/state")


def _argv(
    spec: SandboxSpec,
    python: PythonLayout,
    run_as: tuple[int, int] | None,
    cgroup: Cgroup | None = None,
) -> list[str]:
    helper = [python.interpreter, "/opt/execloop/helper.py", "/run/execloop/ctl.sock"]
    helper += ["--workspace", "/workspace", "--reap-all", "--session", "abc123"]
    return bwrap_argv(
        spec,
        command=helper,
        env={"HOME": "/tmp", **spec.env},
        control_dir=Path("/tmp/sock"),
        state_dir=STATE,
        python=python,
        tools=TOOLS,
        system=["--symlink", "usr/lib", "/lib"],
        run_as=run_as,
        cgroup=cgroup,
    )


def test_python_layout_of_a_plain_install_with_a_shared_libpython() -> None:
    layout = python_layout(
        executable=PYENV / "bin/python3.11", prefix=PYENV, base_prefix=PYENV, libdir=PYENV / "lib"
    )
    assert layout == PythonLayout(
        base_prefix=PYENV,
        executable="/opt/execloop/python/bin/python3.11",
        library_path="/opt/execloop/python/lib",
    )
    assert layout.interpreter == "/opt/execloop/python/bin/python3.11"


def test_python_layout_rebuilds_a_venv_under_opt() -> None:
    layout = python_layout(
        executable=Path("/usr/bin/python3.11"),
        prefix=Path("/work/main/.venv"),
        base_prefix=Path("/usr"),
        libdir=None,
        include_system_site=True,
    )
    assert layout.venv_lib == Path("/work/main/.venv/lib")
    assert layout.pyvenv_cfg == (
        "home = /opt/execloop/python/bin\ninclude-system-site-packages = true\n"
    )
    assert layout.interpreter == "/opt/execloop/venv/bin/python"
    assert layout.library_path is None


def test_an_interpreter_outside_its_prefix_is_refused() -> None:
    with pytest.raises(BackendUnavailableError, match="not inside its prefix"):
        python_layout(
            executable=Path("/opt/py/bin/python"), prefix=PYENV, base_prefix=PYENV, libdir=None
        )


def test_exact_command_line_when_not_root() -> None:
    spec = SandboxSpec(backend="local", env={"VISIBLE": "yes"}, tmp_size="8m")
    python = PythonLayout(PYENV, "/opt/execloop/python/bin/python3.11", None, None, "/opt/p/lib")
    assert _argv(spec, python, None) == [
        "/usr/bin/bwrap", "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", "1000", "--gid", "1000",
        "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv",
        "--setenv", "HOME", "/tmp", "--setenv", "VISIBLE", "yes",
        "--setenv", "LD_LIBRARY_PATH", "/opt/p/lib",
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib",
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--ro-bind", "/tmp/state/etc/passwd", "/etc/passwd",
        "--ro-bind", "/tmp/state/etc/group", "/etc/group",
        "--ro-bind", "/tmp/state/etc/hosts", "/etc/hosts",
        "--ro-bind", str(PYENV), "/opt/execloop/python",
        "--ro-bind", "/tmp/state/helper.py", "/opt/execloop/helper.py",
        "--ro-bind", "/tmp/state/helper.pyc", "/opt/execloop/helper.pyc",
        "--ro-bind", "/tmp/state/guest", "/opt/execloop/guest",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(8 * 1024**2), "--tmpfs", "/dev/shm",
        "--size", str(8 * 1024**2), "--tmpfs", "/tmp",
        "--size", str(512 * 1024**2), "--tmpfs", "/workspace",
        "--bind", "/tmp/sock", "/run/execloop", "--remount-ro", "/", "--chdir", "/workspace",
        "--", *rlimit_argv(spec, prlimit="/usr/bin/prlimit"),
        "/opt/execloop/python/bin/python3.11", "/opt/execloop/helper.py",
        "/run/execloop/ctl.sock", "--workspace", "/workspace", "--reap-all",
        "--session", "abc123",
    ]  # fmt: skip


def test_as_root_a_first_bwrap_stages_host_paths_and_drops_to_the_sandbox_user(
    tmp_path: Path,
) -> None:
    spec = SandboxSpec(backend="local", workspace_dir=tmp_path)
    python = python_layout(
        executable=PYENV / "bin/python3.11",
        prefix=Path("/work/.venv"),
        base_prefix=PYENV,
        libdir=None,
    )
    argv = _argv(spec, python, (1000, 1001))
    split = argv.index("/usr/bin/setpriv")
    assert argv[:split] == [
        "/usr/bin/bwrap", "--symlink", "usr/lib", "/lib",
        "--dir", "/etc", "--dir", "/tmp",  # 0755: bwrap as root would make them 0700
        "--ro-bind", "/usr", "/usr", "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--dev-bind", "/dev", "/dev", "--dev-bind", "/proc", "/proc",
        "--ro-bind", "/tmp/state", "/tmp/state", "--bind", "/tmp/sock", "/tmp/sock",
        "--ro-bind", str(PYENV), "/tmp/state/mnt/python",
        "--ro-bind", "/work/.venv/lib", "/tmp/state/mnt/venv-lib",
        "--bind", str(tmp_path), "/tmp/state/mnt/workspace",
        "--die-with-parent", "--",
    ]  # fmt: skip
    assert argv[split : split + 5] == [
        "/usr/bin/setpriv", "--reuid=1000", "--regid=1001", "--clear-groups", "--"
    ]  # fmt: skip
    inner = " ".join(argv[split + 5 :])
    assert "--ro-bind /tmp/state/mnt/python /opt/execloop/python" in inner
    assert "--ro-bind /tmp/state/mnt/venv-lib /opt/execloop/venv/lib" in inner
    assert "--ro-bind /tmp/state/pyvenv.cfg /opt/execloop/venv/pyvenv.cfg" in inner
    assert "--symlink /opt/execloop/python/bin/python3.11 /opt/execloop/venv/bin/python" in inner
    assert "--bind /tmp/state/mnt/workspace /workspace" in inner
    assert "--tmpfs /workspace" not in inner
    assert str(PYENV) not in inner and "/work/" not in inner  # never a host path inside
    assert "/opt/execloop/venv/bin/python /opt/execloop/helper.py" in inner


def test_user_library_path_comes_after_the_interpreters() -> None:
    spec = SandboxSpec(backend="local", env={"LD_LIBRARY_PATH": "/mine"})
    python = PythonLayout(PYENV, "/opt/execloop/python/bin/python3", library_path="/opt/p/lib")
    argv = _argv(spec, python, None)
    assert argv[argv.index("LD_LIBRARY_PATH") + 1] == "/opt/p/lib:/mine"


def test_prepared_state_dir_holds_what_the_command_line_names(tmp_path: Path) -> None:
    python = python_layout(
        executable=PYENV / "bin/python3.11", prefix=Path("/v"), base_prefix=PYENV, libdir=None
    )
    prepare_state_dir(tmp_path, python, staged=True)
    argv = _argv(SandboxSpec(backend="local"), python, (1000, 1000))
    named = {Path(a.replace(str(STATE), str(tmp_path))) for a in argv if a.startswith("/tmp/state")}
    assert named and all(path.exists() for path in named)
    assert (tmp_path / "etc/passwd").read_text().startswith("sandbox:x:1000:1000:")
    assert oct(tmp_path.stat().st_mode & 0o777) == "0o711"


def test_the_helper_is_shipped_compiled_for_this_interpreter(tmp_path: Path) -> None:
    shipped = helper_files()
    assert shipped["helper.py"] == Path(helper.__file__).read_bytes()
    modules = [name for name in shipped if name.startswith("guest/") and name.endswith(".py")]
    assert modules and all(importlib.util.cache_from_source(m) in shipped for m in modules)
    for source_name in ["helper.py", *modules]:
        compiled_name = (
            "helper.pyc"
            if source_name == "helper.py"
            else importlib.util.cache_from_source(source_name)
        )
        compiled, source = shipped[compiled_name], shipped[source_name]
        # PEP 552: magic, flags (hash-based, unchecked), the source's hash, then the code
        assert compiled[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(compiled[4:8], "little") == 0b01
        assert compiled[8:16] == importlib.util.source_hash(source)
        code = marshal.loads(compiled[16:])
        # its tracebacks name the source bound beside it in the sandbox
        assert code.co_filename == f"{Path(HELPER).parent}/{source_name}"
    assert "main" in marshal.loads(shipped["helper.pyc"][16:]).co_names


def test_probe_uses_the_same_namespaces_and_user_as_the_sandbox() -> None:
    assert probe_argv(TOOLS, as_root=False)[:8] == [
        "/usr/bin/bwrap", "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", "1000", "--gid", "1000",
    ]  # fmt: skip
    as_root = probe_argv(TOOLS, as_root=True)
    split = as_root.index("/usr/bin/setpriv")
    assert as_root[split - 2 : split + 6] == [
        "--die-with-parent", "--",
        "/usr/bin/setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--",
        "/usr/bin/bwrap",
    ]  # fmt: skip


def test_as_root_the_first_bwrap_never_binds_the_whole_host_tree() -> None:
    # a recursive bind of / copies every host mount: one (un)mounted meanwhile fails it
    argv = _argv(SandboxSpec(backend="local"), PythonLayout(PYENV, "/p/bin/python"), (1000, 1000))
    outer = argv[: argv.index("/usr/bin/setpriv")]
    sources = [outer[i + 1] for i, a in enumerate(outer) if "-bind" in a]
    assert "/" not in sources
    assert sources == [
        "/usr", "/etc/ld.so.cache", "/dev", "/proc", "/tmp/state", "/tmp/sock", str(PYENV)
    ]  # fmt: skip
    probe = probe_argv(TOOLS, as_root=True)
    probe = probe[: probe.index("/usr/bin/setpriv")]
    assert "/" not in [probe[i + 1] for i, a in enumerate(probe) if "-bind" in a]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gpus": ("0",)}, "cannot honour gpus=('0',): GPUs are only passed through by"),
        ({"image": "python:3.11"}, "cannot honour image='python:3.11': it runs the host's own"),
        ({"runtime": "runsc"}, "cannot honour runtime='runsc': OCI runtimes"),
        ({"placement": "bubblewrap"}, "placement only applies to backend='jupyter'"),
    ],
)
def test_fields_it_cannot_honour_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="the local backend") as raised:
        LocalSandbox(SandboxSpec(backend="local", **fields))  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_cpus_need_a_cpu_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    LocalSandbox(SandboxSpec(backend="local", cpus=2.0))  # this host gives one (root, v1)
    monkeypatch.setenv(ENV, "off")
    with pytest.raises(
        ConfigError, match=r"cannot honour cpus=2\.0: this host gives the sandbox no"
    ):
        LocalSandbox(SandboxSpec(backend="local", cpus=2.0))
    LocalSandbox(SandboxSpec(backend="local"))  # the default is no request


@pytest.mark.parametrize("run_as", [None, (1000, 1000)])
def test_in_a_cgroup_the_tree_enters_it_first_and_keeps_only_the_other_rlimits(
    run_as: tuple[int, int] | None,
) -> None:
    group = Cgroup(version=1, dirs={"memory": Path("/cg/memory/s"), "pids": Path("/cg/pids/s")})
    spec = SandboxSpec(backend="local")
    python = PythonLayout(PYENV, "/opt/execloop/python/bin/python3.11")
    argv = _argv(spec, python, run_as, group)
    assert argv[:7] == [
        "/bin/sh", "-c", argv[2], "execloop-cgroup",
        "/cg/memory/s/cgroup.procs", "/cg/pids/s/cgroup.procs", "--",
    ]  # fmt: skip
    without = _argv(spec, python, run_as)
    limits = rlimit_argv(spec, prlimit="/usr/bin/prlimit", in_cgroup=True)
    start = without.index("/usr/bin/prlimit")
    end = without.index("--", start) + 1
    assert argv[7:] == [*without[:start], *limits, *without[end:]]
    assert not [a for a in argv if a.startswith(("--data=", "--as=", "--nproc="))]


def test_the_host_user_is_the_workspace_owner_and_never_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:  # bwrap maps the sandbox user to the caller
        assert host_ids(SandboxSpec(backend="local")) is None
        return
    assert host_ids(SandboxSpec(backend="local")) == (1000, 1000)
    owned = tmp_path / "owned"
    owned.mkdir()
    os.chown(owned, 1234, 1235)
    assert host_ids(SandboxSpec(backend="local", workspace_dir=owned)) == (1234, 1235)
    with pytest.raises(ConfigError, match="belongs to root"):
        host_ids(SandboxSpec(backend="local", workspace_dir=tmp_path))
