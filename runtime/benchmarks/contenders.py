"""Everything ``execloop bench sandboxes`` puts side by side, behind one small shape: open a
session, run code in it (its stdout back), close it, and say where its memory is.

execloop's own backends come first, then the executors users would pick instead (each one's
adapter is in ``peers.py``), then the references: bare Docker, a raw Jupyter kernel and the
stdio REPL floor. Every container of a run carries the run's labels (``BenchContext``), so the
idle memory is read and leftovers found by label; autogen's executor takes no labels, so its
containers are named after the run instead.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import anyio.to_thread
import docker.errors

from execloop.errors import ConfigError, ExecloopError
from execloop.runtime.benchmarks.context import BenchContext, ContenderSession, labelled
from execloop.runtime.benchmarks.floor import start_floor
from execloop.runtime.benchmarks.raw_kernel import docker_raw_kernel, raw_kernel_run
from execloop.sandboxes import SandboxSpec, create_sandbox
from execloop.sandboxes.spec import ISOLATING_BACKENDS, Placement

__all__ = ["Contender", "all_contenders"]


@dataclass(frozen=True)
class Contender:
    key: str  # what --only takes
    name: str
    group: str  # execloop, peer or reference
    isolation: str
    open: Callable[[BenchContext], Awaitable[ContenderSession]]
    needs: tuple[str, ...] = ()  # modules that must import (the `bench` extra)
    note: str = ""  # how it was set up here, where that differs from its defaults


async def _execloop(
    ctx: BenchContext, fields: dict[str, Any], *, in_container: bool
) -> ContenderSession:
    session, labels = ctx.new_session()
    sandbox = create_sandbox(SandboxSpec(labels=labels if in_container else {}, **fields))
    try:
        await sandbox.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await sandbox.close()
        raise

    async def run(code: str) -> str:
        result = await sandbox.exec(code)
        return result.stdout

    def pid() -> int | None:
        process = getattr(sandbox, "process", None)  # a helper's bubblewrap root
        if process is not None:
            return int(process.pid)
        manager = getattr(sandbox, "kernel_manager", None)  # a bubblewrap kernel's process,
        kernel = getattr(manager.provisioner, "_kernel", None) if manager else None  # once found
        return None if kernel is None else int(kernel.pid)

    return ContenderSession(run, sandbox.close, labelled(session) if in_container else None, pid)


def _accepts(**fields: Any) -> bool:
    """Whether a backend takes ``fields`` (a backend refuses what it cannot honour)."""
    try:
        create_sandbox(SandboxSpec(**fields))
    except ConfigError:
        return False
    except ExecloopError:
        return True  # it takes the spec but cannot run here: its open() will say why
    return True


def _execloop_contenders() -> list[Contender]:
    """One contender per isolating backend and placement it takes, from the registries (runtime
    names no backend): a backend that takes labels runs in a container."""
    found = []
    for backend in ISOLATING_BACKENDS:
        placements = [p for p in get_args(Placement) if _accepts(backend=backend, placement=p)]
        for placement in placements:
            fields = {"backend": backend, "placement": placement}
            in_container = _accepts(**fields, labels={"bench": "1"})
            suffix = f" ({placement})" if len(placements) > 1 else ""
            found.append(
                Contender(
                    f"execloop-{backend}" + (f"-{placement}" if suffix else ""),
                    f"execloop {backend}{suffix}",
                    "execloop",
                    "container" if in_container else "process sandbox (bubblewrap)",
                    functools.partial(_execloop, fields=fields, in_container=in_container),
                )
            )
    return found


async def _docker_run(ctx: BenchContext) -> ContenderSession:
    """No session: every exec is a ``docker run --rm --network none IMAGE python3 -c``."""
    session, labels = ctx.new_session()

    def one_shot(code: str) -> bytes:
        try:
            return bytes(
                ctx.client.containers.run(
                    ctx.image,
                    ["python3", "-c", code],
                    remove=True,
                    network_mode="none",
                    labels=labels,
                )
            )
        except docker.errors.ContainerError:  # the code failed: that is its output, not ours
            return b""

    async def run(code: str) -> str:
        return (await anyio.to_thread.run_sync(one_shot, code)).decode()

    async def close() -> None:
        return None

    return ContenderSession(run, close, labelled(session))


async def _docker_exec(ctx: BenchContext) -> ContenderSession:
    """A long-lived container; every exec is a ``docker exec python3 -c``."""
    session, labels = ctx.new_session()
    container = await anyio.to_thread.run_sync(
        lambda: ctx.client.containers.run(
            ctx.image,
            ["sleep", "infinity"],
            detach=True,
            network_mode="none",
            init=True,
            labels=labels,
        )
    )

    async def run(code: str) -> str:
        done = await anyio.to_thread.run_sync(container.exec_run, ["python3", "-c", code])
        return bytes(done.output).decode()

    async def close() -> None:
        await anyio.to_thread.run_sync(lambda: container.remove(force=True))

    return ContenderSession(run, close, labelled(session))


async def _raw_kernel(ctx: BenchContext) -> ContenderSession:
    session, labels = ctx.new_session()
    scratch = tempfile.TemporaryDirectory(prefix="execloop-bench-kernel-")
    try:
        kc, stop = await docker_raw_kernel(ctx.client, ctx.image, Path(scratch.name) / "k", labels)
    except BaseException:
        scratch.cleanup()
        raise

    async def run(code: str) -> str:
        return await raw_kernel_run(kc, code)

    async def close() -> None:
        try:
            await stop()
        finally:
            scratch.cleanup()

    return ContenderSession(run, close, labelled(session))


async def _floor(ctx: BenchContext) -> ContenderSession:
    session, labels = ctx.new_session()
    floor = await start_floor(ctx.client, ctx.image, labels, via="stdio")

    async def run(code: str) -> str:
        return (await floor.exec(code)).decode()

    return ContenderSession(run, floor.aclose, labelled(session))


def _peers() -> list[Contender]:
    from execloop.runtime.benchmarks import peers

    return [
        Contender(
            "llm-sandbox",
            "llm-sandbox SandboxSession",
            "peer",
            "container",
            peers.llm_sandbox,
            ("llm_sandbox",),
            "skip_environment_setup=True: its setup pip-installs from PyPI into the container",
        ),
        Contender(
            "llm-sandbox-interactive",
            "llm-sandbox InteractiveSandboxSession",
            "peer",
            "container",
            peers.llm_sandbox_interactive,
            ("llm_sandbox.interactive",),
            "runs the image's interpreter (IPython installed) instead of a venv its skipped "
            "setup would pip-install from PyPI",
        ),
        Contender(
            "autogen-docker",
            "autogen-ext DockerCommandLineCodeExecutor",
            "peer",
            "container",
            peers.autogen_docker,
            ("autogen_ext.code_executors.docker",),
            "default network (it has no option for none); its PID 1 is /bin/sh, which ignores "
            "SIGTERM, so stop() waits out Docker's 10 s grace",
        ),
        Contender(
            "smolagents-local",
            "smolagents LocalPythonExecutor",
            "peer",
            "no isolation (in-process)",
            peers.smolagents_local,
            ("smolagents.local_python_executor",),
            "not a sandbox: an AST interpreter in the caller's own process",
        ),
    ]


@functools.cache
def all_contenders() -> tuple[Contender, ...]:
    """execloop's backends, the peers, then the references (found once, on first use: the
    execloop rows come from constructing each backend's sandbox, nothing started)."""
    return (
        *_execloop_contenders(),
        *_peers(),
        Contender(
            "docker-run",
            "docker run --rm python3 -c",
            "reference",
            "container",
            _docker_run,
            note="no session: every exec is a new container",
        ),
        Contender("docker-exec", "docker exec python3 -c", "reference", "container", _docker_exec),
        Contender(
            "raw-kernel",
            "raw jupyter_client kernel (container)",
            "reference",
            "container",
            _raw_kernel,
        ),
        Contender("floor", "stdio REPL floor (container)", "reference", "container", _floor),
    )
