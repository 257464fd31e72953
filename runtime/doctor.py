"""``execloop doctor``: what works on this machine, and how to fix what does not.

Each probe is small and independent; a probe never raises, it reports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Finding", "run_doctor"]


class Finding(BaseModel):
    """One probe's verdict. ``required`` findings that fail make doctor exit non-zero."""

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _docker_client() -> tuple[Any, str]:
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
        return client, ""
    except Exception as exc:  # any failure here means "no daemon", whatever its type
        return None, str(exc).splitlines()[0][:200]


def _check_daemon(client: Any, error: str) -> Finding:
    if client is None:
        return Finding(
            name="docker daemon",
            ok=False,
            detail=f"no answer: {error}",
            fix="run `sudo scripts/docker-up.sh` (installs docker.io if missing, starts dockerd)",
        )
    info = client.info()
    detail = (
        f"Engine {info.get('ServerVersion')}, cgroup v{info.get('CgroupVersion', '?')}, "
        f"storage {info.get('Driver')}"
    )
    return Finding(name="docker daemon", ok=True, detail=detail)


def _check_seccomp(client: Any) -> Finding:
    options = " ".join(client.info().get("SecurityOptions", []))
    ok = "seccomp" in options
    return Finding(
        name="docker seccomp",
        ok=ok,
        detail=options or "no security options reported",
        fix="" if ok else "use a kernel and Docker built with seccomp (CONFIG_SECCOMP=y)",
    )


def _check_images(client: Any) -> Finding:
    from execloop.images import images_status

    status = images_status(client)
    missing = [tag for tag, present in status.items() if not present]
    return Finding(
        name="sandbox images",
        ok=not missing,
        detail="missing: " + ", ".join(missing) if missing else ", ".join(status),
        fix="run `execloop images build` (offline: debootstrap + a local wheelhouse)",
    )


def _check_train_image(client: Any) -> Finding:
    """The on-demand train image, either variant (never required)."""
    from execloop.images import train_image_tag
    from execloop.images.train_image import TORCH_PINS

    present = []
    for variant in TORCH_PINS:
        tag = train_image_tag(variant)
        try:
            client.images.get(tag)
        except Exception:  # missing or unreadable: reported as not built
            continue
        present.append(tag)
    return Finding(
        name="train image",
        ok=bool(present),
        detail=", ".join(present) or "not built (PyTorch, transformers, PEFT, TRL)",
        fix="`execloop images build train` (CUDA torch, serves CPU and GPU hosts) or "
        "`execloop images build train --torch cpu` (small, CPU only)",
        required=False,
    )


def _check_image_packages(client: Any) -> Finding:
    """What the python image has, from the record its build wrote (no container is started)."""
    from execloop.errors import ImageError
    from execloop.images import load_inputs, python_image_tag
    from execloop.images.packages import image_packages, requirement_names

    tag, fix = python_image_tag(), "run `execloop images build` (`--force` to rebuild)"
    try:
        packages = image_packages(client, tag)
    except ImageError as exc:
        return Finding(name="image packages", ok=False, detail=str(exc), fix=fix, required=False)
    if packages is None:
        detail = f"{tag} was built before images recorded their packages"
        return Finding(name="image packages", ok=False, detail=detail, fix=fix, required=False)
    wanted = requirement_names(load_inputs().requirements)
    missing = [name for name in wanted if name not in packages]
    listed = ", ".join(f"{name} {packages[name]}" for name in wanted if name in packages)
    others = len(packages) - len(wanted) + len(missing)
    detail = f"{listed} (+{others} dependencies)" + (f"; missing: {missing}" if missing else "")
    return Finding(name="image packages", ok=not missing, detail=detail, fix=fix, required=False)


def _gpu_devices() -> str:
    """This host's NVIDIA GPUs as ``nvidia-smi -L`` lists them (index, name, UUID)."""
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi (no NVIDIA driver)"
    ok, listing = _run(["nvidia-smi", "-L"])
    if not ok:
        return f"nvidia-smi failed: {listing}"
    return "; ".join(line.strip() for line in listing.splitlines() if line.strip()) or "none"


def _check_gpu(client: Any) -> Finding:
    from execloop.sandboxes.placements.container import NVIDIA_HOOK

    runtimes = sorted(client.info().get("Runtimes") or {})
    hook = shutil.which(NVIDIA_HOOK)
    has_nvidia = "nvidia" in runtimes or hook is not None
    runtime = (
        "nvidia runtime registered"
        if "nvidia" in runtimes
        else f"{NVIDIA_HOOK} at {hook}"
        if hook
        else f"no NVIDIA runtime (runtimes: {', '.join(runtimes) or 'none'})"
    )
    return Finding(
        name="GPU runtime",
        ok=has_nvidia,
        detail=f"{runtime}; devices: {_gpu_devices()}",
        fix="on a host with an NVIDIA GPU: install nvidia-container-toolkit, run `nvidia-ctk "
        "runtime configure --runtime=docker` and restart dockerd to use --gpus / "
        "SandboxSpec(gpus=...); `scripts/gpu-check.sh` then tests it end to end",
        required=False,
    )


def _check_gvisor(client: Any) -> Finding:
    ok = "runsc" in client.info().get("Runtimes", {})
    return Finding(
        name="gVisor (runsc)",
        ok=ok,
        detail="runsc registered with dockerd" if ok else "not installed",
        fix="optional: install gVisor and register `runsc` in /etc/docker/daemon.json",
        required=False,
    )


def _run(command: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stderr or done.stdout).strip()[:200]


def _check_userns() -> Finding:
    limit = Path("/proc/sys/user/max_user_namespaces")
    count = int(limit.read_text()) if limit.exists() else 0
    ok, error = _run(["unshare", "--user", "--map-root-user", "true"])
    return Finding(
        name="user namespaces",
        ok=ok and count > 0,
        detail=f"max_user_namespaces={count}" + ("" if ok else f"; unshare failed: {error}"),
        fix="`sysctl -w user.max_user_namespaces=15000` (and on Ubuntu "
        "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`)",
        required=False,
    )


def _check_bubblewrap() -> Finding:
    from execloop.errors import BackendUnavailableError
    from execloop.sandboxes.placements.bubblewrap import find_tools, probe_argv

    try:
        tools = find_tools()
    except BackendUnavailableError as exc:
        return Finding(
            name="bubblewrap", ok=False, detail="a tool is missing", fix=str(exc), required=False
        )
    # exactly what the local backend starts: uid 1000 in a user namespace that cannot nest
    # (bubblewrap >= 0.8), reached through setpriv when execloop runs as root
    ok, error = _run(probe_argv(tools, as_root=os.geteuid() == 0))
    return Finding(
        name="bubblewrap",
        ok=ok,
        detail="bwrap sandboxes as uid 1000 work" if ok else f"bwrap failed: {error}",
        fix="the local backend needs bubblewrap >= 0.8 and unprivileged user namespaces "
        "(see above)",
        required=False,
    )


def _check_local_limits() -> Finding:
    """Which limits the local backend and bubblewrap kernels get here: a cgroup each, or
    rlimits (per process and per uid)."""
    from execloop.errors import ConfigError
    from execloop.sandboxes.cgroup_host import ENV, detect_cgroups
    from execloop.sandboxes.placements.process import nproc_per_sandbox
    from execloop.sandboxes.spec import SANDBOX_UID, SandboxSpec

    name = "local sandbox limits"
    try:
        host = detect_cgroups()
    except ConfigError as exc:
        return Finding(name=name, ok=False, detail=str(exc), fix=f"unset {ENV}", required=False)
    spec = SandboxSpec()
    memory = f"{spec.memory / 1024**3:g} GiB"
    if host.mode != "none":
        cpus = f"cpus {spec.cpus:g}" if host.cpu else "no CPU quota (no cpu controller)"
        return Finding(
            name=name,
            ok=True,
            detail=f"{host.detail}; a cgroup per local sandbox and bubblewrap kernel, by "
            f"default memory {memory} (no swap), pids {spec.pids}, {cpus}",
            required=False,
        )
    uid = SANDBOX_UID if os.geteuid() == 0 else os.geteuid()
    budget = (
        "counted per sandbox (its own user namespace, Linux >= 5.14)"
        if nproc_per_sandbox()
        else f"shared by every sandbox and process of uid {uid} on this host (Linux < 5.14)"
    )
    return Finding(
        name=name,
        ok=False,
        detail=f"none ({host.detail}): rlimits: memory is RLIMIT_DATA per process "
        f"(default {memory}, not per sandbox; a child's OOM is an `error`, the peak one "
        f"process's); the process budget (RLIMIT_NPROC, default {spec.pids}) is {budget}; "
        "no CPU rate limit (`cpus` is refused)",
        fix=f"run execloop as root, or in a cgroup v2 subtree delegated to your user with "
        f"memory and pids enabled (systemd: `systemd-run --user --scope execloop ...`); "
        f"unset {ENV}=off if it is set",
        required=False,
    )


def run_doctor() -> list[Finding]:
    client, error = _docker_client()
    findings = [_check_daemon(client, error)]
    if client is not None:
        probes: list[Callable[[Any], Finding]] = [
            _check_seccomp,
            _check_images,
            _check_image_packages,
            _check_train_image,
            _check_gpu,
            _check_gvisor,
        ]
        findings += [probe(client) for probe in probes]
    findings += [_check_userns(), _check_bubblewrap(), _check_local_limits()]
    return findings
