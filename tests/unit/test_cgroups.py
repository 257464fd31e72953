"""Per-sandbox cgroups, pure parts: parsing /proc, choosing where cgroups go (v1 and v2 laid out
like cgroupfs in a temporary directory: v2 cannot be exercised on the development host), the
limit files, the entering prefix (really run), the naming and orphan search."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from execloop.errors import ConfigError, SandboxStartError
from execloop.sandboxes import cgroups
from execloop.sandboxes.cgroup_host import (
    ENV,
    CgroupHost,
    Mount,
    detect_cgroups,
    locate,
    locate_v2,
    orphaned_cgroups,
    parse_membership,
    parse_mounts,
)
from execloop.sandboxes.cgroups import Cgroup, cgroup_name, is_orphan, limit_files
from execloop.sandboxes.spec import SandboxSpec

HYBRID_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_MEMBERSHIP = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
"""


def test_mounts_and_membership_are_parsed() -> None:
    mounts = parse_mounts(HYBRID_MOUNTINFO)
    assert [(m.point.name, m.version) for m in mounts] == [
        ("cpu", 1), ("cpuacct", 1), ("memory", 1), ("pids", 1), ("systemd", 1), ("unified", 2)
    ]  # fmt: skip
    assert "cpu" in mounts[0].options and "cpu" not in mounts[1].options
    escaped = parse_mounts("30 1 0:26 /a\\040b /sys/fs/my\\040cg rw shared:4 - cgroup2 none rw\n")
    assert escaped == [Mount(Path("/sys/fs/my cg"), "/a b", 2, frozenset({"rw"}))]
    assert parse_membership(HYBRID_MEMBERSHIP) == {
        "name=systemd": "/", "pids": "/", "memory": "/process_api/abc", "cpuacct": "/",
        "cpu": "/", "": "/",
    }  # fmt: skip
    assert parse_membership("5:cpu,cpuacct:/a\n") == {"cpu": "/a", "cpuacct": "/a"}


def _v1_tree(root: Path) -> list[Mount]:
    for path in ("memory/process_api/abc", "pids", "cpu"):
        (root / path).mkdir(parents=True)
    return [
        Mount(root / "cpu", "/", 1, frozenset({"rw", "cpu"})),
        Mount(root / "memory", "/", 1, frozenset({"rw", "memory"})),
        Mount(root / "pids", "/", 1, frozenset({"rw", "pids"})),
        Mount(root / "unified", "/", 2, frozenset({"rw"})),
    ]


def test_v1_cgroups_go_under_our_own_in_each_hierarchy(tmp_path: Path) -> None:
    host = locate(_v1_tree(tmp_path), parse_membership(HYBRID_MEMBERSHIP))
    assert host.mode == "v1"
    assert dict(host.parents) == {
        "memory": tmp_path / "memory/process_api/abc",
        "pids": tmp_path / "pids",
        "cpu": tmp_path / "cpu",
    }
    assert host.cpu and host.refusals(instead="x") == {}


def test_v1_without_pids_or_with_a_foreign_cgroup_is_none(tmp_path: Path) -> None:
    mounts = _v1_tree(tmp_path)
    no_pids = [m for m in mounts if "pids" not in m.options]
    host = locate(no_pids, parse_membership(HYBRID_MEMBERSHIP))
    assert host.mode == "none" and "pids hierarchy is not mounted" in host.detail
    outside = parse_membership("4:memory:/../elsewhere\n8:pids:/\n")  # outside our namespace
    assert locate(mounts, outside).mode == "none"
    without_cpu = locate(
        [m for m in mounts if "cpu" not in m.options], parse_membership(HYBRID_MEMBERSHIP)
    )
    assert without_cpu.mode == "v1" and not without_cpu.cpu
    assert "no cpu controller" in without_cpu.refusals(instead="use docker")["cpus"]


def _v2_tree(top: Path, *, slice_controls: str) -> Path:
    """``top`` laid out like a systemd host: we sit in a scope (which holds processes, so no
    controllers for children) under a slice that enables ``slice_controls`` for its children."""
    scope = top / "user.slice/app.slice/run-1.scope"
    scope.mkdir(parents=True)
    (top / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (top / "cgroup.subtree_control").write_text("cpu io memory pids\n")
    (top / "user.slice/cgroup.subtree_control").write_text("cpu memory pids\n")
    (top / "user.slice/app.slice/cgroup.subtree_control").write_text(slice_controls)
    for folder in (top, top / "user.slice", top / "user.slice/app.slice", scope):
        (folder / "cgroup.procs").write_text("")
    (scope / "cgroup.subtree_control").write_text("")
    return scope


def test_v2_cgroups_go_under_the_nearest_delegated_parent(tmp_path: Path) -> None:
    scope = _v2_tree(tmp_path, slice_controls="memory pids\n")
    host = locate_v2(tmp_path, scope)
    assert host.mode == "v2"
    assert dict(host.parents) == {"memory": scope.parent, "pids": scope.parent}
    assert not host.cpu  # the slice does not give its children the cpu controller
    mounts = [Mount(tmp_path, "/", 2, frozenset({"rw", "nsdelegate"}))]
    membership = {"": "/user.slice/app.slice/run-1.scope"}
    assert locate(mounts, membership) == host


def test_v2_walks_up_past_a_parent_without_pids(tmp_path: Path) -> None:
    scope = _v2_tree(tmp_path, slice_controls="memory\n")
    host = locate_v2(tmp_path, scope)
    assert host.mode == "v2" and host.parents["memory"] == tmp_path / "user.slice"
    assert host.cpu


def test_v2_without_the_controllers_is_none(tmp_path: Path) -> None:
    scope = _v2_tree(tmp_path, slice_controls="")
    (tmp_path / "cgroup.controllers").write_text("cpu io memory\n")
    host = locate_v2(tmp_path, scope)
    assert host.mode == "none" and "has no pids" in host.detail
    assert locate_v2(tmp_path, None).mode == "none"


def test_v2_cgroup_is_made_with_its_limits(tmp_path: Path) -> None:
    scope = _v2_tree(tmp_path, slice_controls="cpu memory pids\n")
    host = locate_v2(tmp_path, scope)
    spec = SandboxSpec(backend="local", memory="256m", pids=100, cpus=1.5)
    group = host.create(spec, tag="Sess-1")
    (folder,) = group.folders
    assert folder.parent == scope.parent and folder.name.startswith(cgroups.PREFIX)
    assert folder.name.split("-")[-1].startswith("sess1")  # the tag, cleaned
    written = {p.name: p.read_text() for p in folder.iterdir()}
    # a fresh fake directory has no memory.swap.max: the kernel accounts no swap there
    assert written == {"memory.max": str(256 << 20), "pids.max": "100", "cpu.max": "150000 100000"}
    assert group.enter_argv()[-2:] == [str(folder / "cgroup.procs"), "--"]
    (folder / "memory.peak").write_text("12345\n")
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\n")
    assert (group.peak_memory(), group.oom_kills()) == (12345, 2)


def test_a_cgroup_that_cannot_be_made_is_a_clear_start_error(tmp_path: Path) -> None:
    host = CgroupHost("v2", {"memory": tmp_path / "gone", "pids": tmp_path / "gone"})
    with pytest.raises(
        SandboxStartError, match=f"could not set up the sandbox's cgroup .*{ENV}=off"
    ):
        host.create(SandboxSpec(), tag="t")
    with pytest.raises(SandboxStartError, match="no cgroup can be made here: why"):
        CgroupHost("none", detail="why").create(SandboxSpec(), tag="t")


def test_limit_files_in_the_order_the_kernel_accepts() -> None:
    assert limit_files(1, memory=1 << 30, pids=256, cpus=0.5, swap=True) == [
        ("memory", "memory.limit_in_bytes", str(1 << 30)),
        ("memory", "memory.memsw.limit_in_bytes", str(1 << 30)),  # after the memory limit
        ("pids", "pids.max", "256"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
    ]
    assert limit_files(2, memory=1 << 30, pids=64, cpus=None, swap=True) == [
        ("memory", "memory.max", str(1 << 30)),
        ("memory", "memory.swap.max", "0"),  # v2 limits swap alone: none
        ("pids", "pids.max", "64"),
    ]
    assert limit_files(2, memory=1, pids=1, cpus=0.001, swap=False)[-1] == (
        "cpu", "cpu.max", "1000 100000"  # the kernel's smallest quota
    )  # fmt: skip


def test_the_prefix_moves_itself_in_then_becomes_the_command(tmp_path: Path) -> None:
    first, second = tmp_path / "memory", tmp_path / "pids"
    first.mkdir()
    second.mkdir()
    group = Cgroup(version=1, dirs={"memory": first, "pids": second})
    done = subprocess.run(
        [*group.enter_argv(), "sh", "-c", "echo $$"], capture_output=True, text=True, check=True
    )
    pid = done.stdout.strip()  # exec keeps the pid: the command is the process moved in
    assert (
        (first / "cgroup.procs").read_text() == (second / "cgroup.procs").read_text() == f"{pid}\n"
    )
    blocked = Cgroup(version=2, dirs={"memory": tmp_path / "missing"})
    refused = subprocess.run([*blocked.enter_argv(), "touch", str(tmp_path / "ran")], check=False)
    assert refused.returncode == 125 and not (tmp_path / "ran").exists()  # never runs outside


def test_names_tell_live_from_orphaned_owners(tmp_path: Path) -> None:
    mine = cgroup_name("abc")
    assert not is_orphan(mine)
    pid, _, rest = mine.removeprefix(cgroups.PREFIX).partition(".")
    ticks, host, _ = rest.split("-", 2)
    dead = f"{cgroups.PREFIX}{pid}.{int(ticks) + 1}-{host}-abc123"  # our pid, another start
    foreign = f"{cgroups.PREFIX}{pid}.{int(ticks) + 1}-00000000-abc123"  # another host's
    assert is_orphan(dead)
    assert not is_orphan(foreign) and not is_orphan("execloop-sandbox-x") and not is_orphan("a")
    (tmp_path / "process_api/x" / dead).mkdir(parents=True)
    (tmp_path / "process_api" / mine).mkdir()
    (tmp_path / foreign).mkdir()
    mounts = [Mount(tmp_path, "/", 1, frozenset({"rw", "memory"}))]
    assert orphaned_cgroups(mounts) == [tmp_path / "process_api/x" / dead]
    devices = [Mount(tmp_path, "/", 1, frozenset({"rw", "devices"}))]  # never made there
    assert orphaned_cgroups(devices) == []


def test_the_switch_forces_the_fallback_and_a_typo_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "off")
    host = detect_cgroups()
    assert host.mode == "none" and f"{ENV}=off" in host.detail
    assert "no cgroup" in host.refusals(instead="use docker")["cpus"]
    monkeypatch.setenv(ENV, "of")
    with pytest.raises(ConfigError, match=f"{ENV}='of' is not understood"):
        detect_cgroups()
    monkeypatch.setenv(ENV, "auto")
    assert detect_cgroups().mode in ("v1", "v2", "none")
