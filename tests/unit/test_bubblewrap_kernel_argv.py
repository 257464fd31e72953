"""The bubblewrap kernel's command line: the bubblewrap placement's sandbox around the kernel
(the very one the local backend's helper runs in)."""

from __future__ import annotations

from pathlib import Path

import pytest

from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.cgroups import Cgroup
from execloop.sandboxes.placements.bubblewrap import PythonLayout, Tools, bwrap_argv

TOOLS = Tools(bwrap="/usr/bin/bwrap", setpriv="/usr/bin/setpriv", prlimit="/usr/bin/prlimit")
PYTHON = PythonLayout(Path("/root/.pyenv/versions/3.11.7"), "/opt/execloop/python/bin/python3.11")
KERNEL = ["/opt/execloop/python/bin/python3.11", "-m", "ipykernel_launcher", "-f", "/run/k.json"]


def argv(tmp_path: Path, run_as: tuple[int, int] | None, cgroup: Cgroup | None = None) -> list[str]:
    spec = SandboxSpec(
        backend="jupyter", placement="bubblewrap", memory="512m", workspace_dir=tmp_path
    )
    return bwrap_argv(
        spec,
        command=KERNEL,
        env={"HOME": "/tmp"},
        control_dir=tmp_path / "control",
        state_dir=tmp_path / "state",
        python=PYTHON,
        tools=TOOLS,
        system=["--symlink", "usr/bin", "/bin"],
        run_as=run_as,
        cgroup=cgroup,
    )


@pytest.mark.parametrize("run_as", [None, (1000, 1000)])
def test_the_kernel_replaces_the_helper_inside_the_same_sandbox(
    tmp_path: Path, run_as: tuple[int, int] | None
) -> None:
    args = argv(tmp_path, run_as)
    command = args[args.index(TOOLS.prlimit) :]
    assert command[-len(KERNEL) :] == KERNEL
    assert not [a for a in command if "helper" in a or a in ("--reap-all", "--session")]
    for flag in ("--unshare-all", "--disable-userns", "--die-with-parent", "--new-session"):
        assert flag in args
    assert "--share-net" not in args
    control = args.index("/run/execloop")  # (the root stage binds it at its own path first)
    assert args[control - 2 : control + 1] == ["--bind", str(tmp_path / "control"), "/run/execloop"]
    assert (TOOLS.setpriv in args) == (run_as is not None)  # as root: drop to the user first


def _limits(args: list[str]) -> list[str]:
    return args[args.index(TOOLS.prlimit) : args.index(KERNEL[0], args.index(TOOLS.prlimit))]


def test_without_a_cgroup_memory_is_private_writable_memory_not_address_space(
    tmp_path: Path,
) -> None:
    limits = _limits(argv(tmp_path, None))
    assert f"--data={512 << 20}" in limits and limits[-1] == "--"
    assert not [a for a in limits if a.startswith("--as=")]
    assert "--nproc=256" in limits  # the other limits stay the local backend's


def test_in_a_cgroup_the_kernel_enters_it_first_and_memory_is_the_cgroups(
    tmp_path: Path,
) -> None:
    group = Cgroup(version=2, dirs={"memory": tmp_path / "cg", "pids": tmp_path / "cg"})
    args = argv(tmp_path, (1000, 1000), group)
    assert args[:2] == ["/bin/sh", "-c"]
    assert args[3:6] == ["execloop-cgroup", str(tmp_path / "cg/cgroup.procs"), "--"]
    assert args[6] == TOOLS.bwrap  # then the local backend's sandbox, as root its outer bwrap
    assert not [a for a in _limits(args) if a.startswith(("--data=", "--as=", "--nproc="))]
