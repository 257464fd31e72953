"""What an attack case is: a script with its expected contained outcome, the backends that
claim to stop it, and the weakened sandbox in which the same script shows the behaviour.

Scripts are templates (``str.format`` fields from ``Decoys.fields``) and run only inside a
sandbox: the claimed backends run them for real; the precondition runs them in a Docker
container built from the docker backend's hardened request with one protection relaxed
(``Weakening``), never bare on the host.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from execloop.sandboxes import ExecResult, ExitReason, Sandbox

__all__ = [
    "ALL_BACKENDS",
    "ESCAPED",
    "ISOLATING",
    "Attack",
    "Category",
    "Decoys",
    "HostAttack",
    "Weakening",
    "blocked",
    "printed",
    "probe",
    "reason_in",
]

ALL_BACKENDS = ("docker", "jupyter-docker", "jupyter-bubblewrap", "local", "restricted")
ISOLATING = ("docker", "jupyter-docker", "jupyter-bubblewrap", "local")


class Category(enum.StrEnum):
    RESOURCES = "resources"
    FILES = "file system"
    NETWORK = "network"
    PRIVILEGE = "privilege"
    LIFECYCLE = "process lifecycle"
    PYTHON = "Python level"
    BRIDGE = "tool bridge"


@dataclasses.dataclass(frozen=True)
class Decoys:
    """Host-side bait the suite checks untouched: a secret file, an environment variable, a
    TCP listener on the host's loopback, an abstract Unix socket, a Unix socket posing as the
    Docker daemon's, a marker for processes, the pytest process's pid and a host process
    running as the sandboxes' uid (``peer_pid``)."""

    secret_path: str
    secret: str
    env_name: str
    port: int
    abstract: str
    docker_socket: str
    marker: str
    host_pid: int
    peer_pid: int

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Weakening:
    """A docker request with one protection relaxed: ``request`` replaces keys of the hardened
    ``container_request`` (``secrets`` mounts the decoy file, the env var and the fake Docker
    socket)."""

    name: str
    request: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    secrets: bool = False


# A verdict: None when the attack was contained, else what got through.
Check = Callable[[ExecResult, "Decoys"], str | None]


@dataclasses.dataclass(frozen=True)
class Attack:
    """One attack script. ``contained`` judges the claimed backends' result; ``shown`` judges
    the weakened run's stdout (None: the behaviour showed); ``fresh`` runs it in a sandbox of
    its own (it would leave the session crippled); ``after`` (code, its expected stdout) runs
    next in the session instead of a plain ``print``; ``armed`` is passed as the template
    field ``armed`` (False in the weakened run: a destructive step is only probed there)."""

    name: str
    category: Category
    claimed: tuple[str, ...]
    code: str
    contained: Check
    weakening: Weakening | None  # None: the script makes its own control call (the bridge)
    shown: Callable[[str, Decoys], str | None] | None
    timeout_s: float | None = None
    fresh: bool = False
    bridge: bool = False
    after: tuple[str, str] | None = None
    # without a weakened run: why the contained outcome itself proves the attack reached its
    # target (the host saw what the script sent)
    self_evident: str = ""

    def script(self, decoys: Decoys, *, armed: bool) -> str:
        return self.code.format(**decoys.fields(), armed=armed)


@dataclasses.dataclass(frozen=True)
class HostAttack:
    """An attack made through the host API (crafted transfers, the tool bridge's lifecycle):
    ``run(sandbox, decoys)`` returns a verdict like ``Attack.contained``. ``proof_code`` in
    ``weakening`` shows what the same trick does when nothing stops it; without one, ``run``
    itself makes a control call that must succeed (the refusal is then specific)."""

    name: str
    category: Category
    claimed: tuple[str, ...]
    run: Callable[[Sandbox, Decoys], Awaitable[str | None]]
    weakening: Weakening | None = None
    proof_code: str = ""
    shown: Callable[[str, Decoys], str | None] | None = None
    bridge: bool = False


def printed(expected: str) -> Callable[[str, Decoys], str | None]:
    """A ``shown`` check: the weakened run's stdout holds ``expected`` (a template)."""

    def shown(stdout: str, decoys: Decoys) -> str | None:
        wanted = expected.format(**decoys.fields())
        return None if wanted in stdout else f"expected {wanted!r} in {stdout[-300:]!r}"

    return shown


def reason_in(*reasons: ExitReason, absent: str = "", present: str = "") -> Check:
    """A ``contained`` check: the exec ended for one of ``reasons``, ``absent`` (a template)
    is not in its stdout and ``present`` is (stderr may quote the script's source)."""

    def contained(result: ExecResult, decoys: Decoys) -> str | None:
        output = result.stdout + result.stderr
        if result.exit_reason not in reasons:
            wanted = "/".join(r.value for r in reasons)
            return f"ended {result.exit_reason.value}, expected {wanted}: {output[-300:]!r}"
        if absent and absent.format(**decoys.fields()) in result.stdout:
            return f"{absent!r} appeared: {output[-300:]!r}"
        if present and present.format(**decoys.fields()) not in result.stdout:
            return f"{present!r} missing: {output[-300:]!r}"
        return None

    return contained


def blocked() -> Check:
    """The usual ``contained``: the script ran to its end and printed BLOCKED (it prints that
    only on the specific refusal it expects, ESCAPED when the attack works)."""
    return reason_in(ExitReason.OK, present="BLOCKED", absent="ESCAPED")


ESCAPED = printed("ESCAPED")


def probe(
    name: str,
    category: Category,
    code: str,
    weakening: Weakening,
    claimed: tuple[str, ...] = ISOLATING,
) -> Attack:
    """The usual case: BLOCKED where claimed, ESCAPED in the weakened run."""
    return Attack(name, category, claimed, code, blocked(), weakening, ESCAPED)
