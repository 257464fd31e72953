"""The weakened sandboxes preconditions run in: the docker backend's hardened container with
the protection in question relaxed. Never bare on the host, never a network with addresses:
``host`` networking only reads the host's interfaces and routes and reaches its loopback."""

from __future__ import annotations

from execloop.sandboxes.spec import SANDBOX_UID

from .attacks import Weakening

__all__ = ["HOST_NET", "HOST_PID", "LIMITS", "PLAIN", "PRIVILEGED", "ROOT", "SECRETS"]

_ROOT = {"user": "0:0", "security_opt": [], "read_only": False}

# Only the execloop helper and the host are missing: no output limit, no exec timeout, no
# leftover-process killing, no RestrictedPython; every kernel-level protection kept.
PLAIN = Weakening("plain")
LIMITS = Weakening(
    "higher limits",
    {
        "pids_limit": 2048,
        "mem_limit": 1024**3,
        "memswap_limit": 1024**3,
        "tmpfs": {
            "/tmp": "rw,nosuid,nodev,size=64m,mode=1777",
            "/workspace": f"rw,nosuid,nodev,size=64m,uid={SANDBOX_UID},gid={SANDBOX_UID}",
        },
    },
)
ROOT = Weakening("root with Docker's default capabilities", {**_ROOT, "cap_drop": []})
PRIVILEGED = Weakening(
    "root, the capabilities in question, no seccomp filter",
    {
        **_ROOT,
        "cap_drop": [],
        # not ALL: a daemon without some capability itself cannot hand it out
        "cap_add": ["SYS_ADMIN", "SYSLOG", "SYS_PTRACE", "NET_ADMIN", "NET_RAW"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    },
)
HOST_NET = Weakening("the host's network namespace", {"network_mode": "host"})
HOST_PID = Weakening("the host's PID namespace", {"pid_mode": "host"})
SECRETS = Weakening("the decoys mounted and passed in", secrets=True)
