"""Runs the attacks on a backend (one shared session, replaced when an attack ends it; a
sandbox of its own for an attack that would leave the session crippled) and their
preconditions in weakened containers.

After every attack: the next exec must work (or, when the attack ended the session as data,
a fresh sandbox must), and no process carrying the marker may be left on the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import psutil

from execloop.errors import SandboxClosedError
from execloop.runtime.bridge import ToolBridge
from execloop.sandboxes import Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.placements.container import (
    OWN_PYTHON,
    container_request,
    default_client,
    default_image,
)
from execloop.sandboxes.reaper import sandbox_labels

from ..contract.backends import BACKEND_SPECS
from .attacks import Attack, Decoys, HostAttack, Weakening
from .cases_bridge import ALLOWED, bridge_registry

__all__ = ["Outcome", "SUITE_SPEC", "run_attacks", "run_weakened", "survivors"]

# Small limits, so that every exhaustion is reached in a fraction of a second.
SUITE_SPEC: dict[str, Any] = {
    "pids": 64,
    "memory": "256m",
    "tmp_size": "8m",
    "workspace_size": "16m",
    "output_limit_bytes": "4m",
    "max_output_bytes": "64k",
    "timeout_s": 20,
}
WEAK_TIMEOUT_S = 12


@dataclasses.dataclass(frozen=True)
class Outcome:
    attack: str
    category: str
    backend: str
    stopped: bool
    detail: str


def _spec(backend: str) -> SandboxSpec:
    fields = {**SUITE_SPEC, **BACKEND_SPECS[backend]}
    if backend.startswith("jupyter"):  # a host directory: no size cap to honour
        fields.pop("workspace_size")
    return SandboxSpec(**fields)


def survivors(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in process.info["cmdline"] or ()):
                found.append(process)
    return found


async def _no_survivors(marker: str) -> str | None:
    """Waits up to 3 s for marked processes to go; kills and names those that stay."""
    for _ in range(30):
        left = survivors(marker)
        if not left:
            return None
        await anyio.sleep(0.1)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return f"processes outlived the attack: {[p.pid for p in left]}"


class _Sessions:
    """The backend's shared sandbox, replaced when an attack ends it."""

    def __init__(self, backend: str, stack: contextlib.AsyncExitStack) -> None:
        self.backend, self.stack = backend, stack
        self.shared: Sandbox | None = None

    async def get(self) -> Sandbox:
        if self.shared is None or self.shared.closed or self.shared.ended:
            if self.shared is not None:  # ended by an attack: its resources go now
                await self.shared.close()
            self.shared = await self.stack.enter_async_context(_spec_sandbox(self.backend))
        return self.shared


@contextlib.asynccontextmanager
async def _spec_sandbox(backend: str) -> AsyncIterator[Sandbox]:
    async with create_sandbox(_spec(backend)) as sandbox:
        yield sandbox


NEXT = ("print('next')", "next\n")


async def _next_works(
    sandbox: Sandbox, sessions: _Sessions, probe: tuple[str, str] = NEXT
) -> str | None:
    """The session answers ``probe`` (code, expected stdout), or it ended as data and a fresh
    sandbox (the next shared one) answers it."""
    code, expected = probe
    try:
        after = await sandbox.exec(code, timeout=30)
        if after.stdout == expected:
            return None
        if not (sandbox.ended or sandbox.closed):
            return f"the next exec answered {after.exit_reason.value}: {after.stderr[-300:]!r}"
    except SandboxClosedError:
        pass
    again = await (await sessions.get()).exec(code, timeout=30)
    if again.stdout == expected:
        return None
    return f"a fresh sandbox answered {again.stdout[-200:]!r}: {again.stderr[-300:]!r}"


async def _script(
    attack: Attack, sandbox: Sandbox, sessions: _Sessions, decoys: Decoys
) -> str | None:
    try:
        result = await sandbox.exec(attack.script(decoys, armed=True), timeout=attack.timeout_s)
    except Exception as exc:  # an exhausted resource must be data, never an exception
        return f"exec raised {type(exc).__name__}: {exc}"
    verdict = attack.contained(result, decoys)
    return verdict or await _next_works(sandbox, sessions, attack.after or NEXT)


async def _judge(
    name: str, category: str, backend: str, decoys: Decoys, verdict: str | None
) -> Outcome:
    survived = await _no_survivors(decoys.marker)
    problems = [text for text in (verdict, survived) if text]
    return Outcome(name, category, backend, not problems, "; ".join(problems) or "stopped")


async def run_attacks(
    backend: str, attacks: list[Attack], host_attacks: list[HostAttack], decoys: Decoys
) -> list[Outcome]:
    """Every attack of the lists that ``backend`` claims to stop, judged."""
    outcomes: list[Outcome] = []
    mine = [a for a in attacks if backend in a.claimed]
    async with contextlib.AsyncExitStack() as stack:
        sessions = _Sessions(backend, stack)
        for attack in [a for a in mine if not a.bridge]:
            if attack.fresh:
                async with _spec_sandbox(backend) as own:
                    verdict = await _script(attack, own, sessions, decoys)
            else:
                verdict = await _script(attack, await sessions.get(), sessions, decoys)
            outcomes.append(await _judge(attack.name, attack.category, backend, decoys, verdict))
        for host_attack in [h for h in host_attacks if backend in h.claimed]:
            try:
                verdict = await host_attack.run(await sessions.get(), decoys)
            except Exception as exc:
                verdict = f"raised {type(exc).__name__}: {exc}"
            outcomes.append(
                await _judge(host_attack.name, host_attack.category, backend, decoys, verdict)
            )
    bridged = [a for a in mine if a.bridge]
    if bridged:
        async with (
            contextlib.AsyncExitStack() as stack,
            _spec_sandbox(backend) as sandbox,
            ToolBridge(sandbox, bridge_registry(), allow=ALLOWED),
        ):
            sessions = _Sessions(backend, stack)
            for attack in bridged:
                verdict = await _script(attack, sandbox, sessions, decoys)
                outcomes.append(
                    await _judge(attack.name, attack.category, backend, decoys, verdict)
                )
    return outcomes


# -- preconditions -----------------------------------------------------------------------


def _weakened_request(weakening: Weakening, decoys: Decoys, control_dir: Path) -> dict[str, Any]:
    from docker.types import Mount

    spec = SandboxSpec(**{k: v for k, v in SUITE_SPEC.items() if k != "timeout_s"})
    labels = sandbox_labels(backend="security-weakened", session=uuid.uuid4().hex[:12])
    request = container_request(
        spec,
        image=default_image(),
        own_image=True,
        control_dir=control_dir,
        labels=labels,
        command=["sleep", "infinity"],
    )
    request.update(weakening.request)
    if weakening.secrets:
        folder = str(Path(decoys.secret_path).parent)
        request["mounts"] = [
            *request["mounts"],
            Mount(target=folder, source=folder, type="bind"),
            Mount(target="/var/run/docker.sock", source=decoys.docker_socket, type="bind"),
        ]
        request["environment"] = {**request["environment"], decoys.env_name: decoys.secret}
    return request


def _run_in(container: Any, code: str, marker: str) -> str:
    command = ["timeout", "-s", "KILL", str(WEAK_TIMEOUT_S), OWN_PYTHON, "-c", code]
    status, output = container.exec_run(command, workdir="/workspace")
    time.sleep(0.2)  # a daemon's double fork settles
    left = len(survivors(marker))
    return f"{output.decode(errors='replace')}\n[exit {status}]\n[survivors {left}]"


async def run_weakened(
    weakening: Weakening, scripts: dict[str, str], decoys: Decoys, control_dir: Path
) -> dict[str, str]:
    """Each script's output (with ``[exit N]`` and ``[survivors N]`` lines) in one container
    made from the hardened request with ``weakening`` applied; the container is removed."""

    def run() -> dict[str, str]:
        client = default_client()
        container = client.containers.run(
            detach=True, **_weakened_request(weakening, decoys, control_dir)
        )
        try:
            outputs = {}
            for name, code in scripts.items():
                outputs[name] = _run_in(container, code, decoys.marker)
                for process in survivors(decoys.marker):
                    with contextlib.suppress(psutil.Error):
                        process.kill()
            return outputs
        finally:
            container.remove(force=True)

    return await anyio.to_thread.run_sync(run)
