"""The executors users would pick instead of execloop, each opened as a ``ContenderSession`` on the
locally built image (``pip install 'execloop[bench]'`` installs them).

No peer is allowed to reach a registry: each is pointed at the local image tag, which it finds
with ``images.get`` before it would pull. llm-sandbox's own environment setup runs
``pip install --upgrade pip`` from PyPI in the container, so it is skipped
(``skip_environment_setup=True``) and its interactive session is pointed at the image's own
interpreter, where the IPython it needs is already installed. Blocking libraries run in worker
threads, so two sessions really run at once.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread

from execloop.runtime.benchmarks.context import BenchContext, ContenderSession, labelled

__all__ = ["autogen_docker", "llm_sandbox", "llm_sandbox_interactive", "smolagents_local"]

# The image's interpreter and pip (execloop's python image keeps its packages in this venv).
IMAGE_PYTHON = "/opt/execloop/venv/bin/python"
IMAGE_PIP = "/opt/execloop/venv/bin/pip"


def _llm_sandbox_configs(labels: dict[str, str]) -> dict[str, Any]:
    # network none like every other contender here; the labels find the container
    return {"labels": labels, "network_mode": "none"}


async def _blocking_session(session: Any) -> ContenderSession:
    """An llm-sandbox session (plain or interactive) opened in a worker thread."""
    try:
        await anyio.to_thread.run_sync(session.open)
    except BaseException:
        await anyio.to_thread.run_sync(session.close)
        raise

    async def run(code: str) -> str:
        output = await anyio.to_thread.run_sync(session.run, code)
        return str(output.stdout)

    async def close() -> None:
        await anyio.to_thread.run_sync(session.close)

    return ContenderSession(run, close)


async def _llm_sandbox(ctx: BenchContext, kind: Any, **attributes: str) -> ContenderSession:
    """A session of llm-sandbox's class ``kind`` on the image, ``attributes`` set on it."""
    name, labels = ctx.new_session()
    session = kind(
        lang="python",
        image=ctx.image,
        client=ctx.client,
        skip_environment_setup=True,
        runtime_configs=_llm_sandbox_configs(labels),
    )
    for attribute, value in attributes.items():
        setattr(session, attribute, value)
    opened = await _blocking_session(session)
    opened.containers = labelled(name)
    return opened


async def llm_sandbox(ctx: BenchContext) -> ContenderSession:
    """``SandboxSession``: every ``run`` writes the code into the container and starts a new
    interpreter there (no state kept between runs)."""
    from llm_sandbox import SandboxSession

    return await _llm_sandbox(ctx, SandboxSession)


async def llm_sandbox_interactive(ctx: BenchContext) -> ContenderSession:
    """``InteractiveSandboxSession``: an IPython runner in the container, fed through files.
    Its setup would pip-install IPython into a venv it never made (setup skipped): it runs
    the image's interpreter instead, which has IPython."""
    from llm_sandbox.interactive import InteractiveSandboxSession

    return await _llm_sandbox(
        ctx,
        InteractiveSandboxSession,
        _python_exec_path=IMAGE_PYTHON,
        _pip_exec_path=IMAGE_PIP,
    )


def _readable_temp_dir() -> Path:
    work = Path(tempfile.mkdtemp(prefix="execloop-bench-autogen-"))
    work.chmod(0o755)  # the image runs as uid 1000: it must read the code files
    return work


async def autogen_docker(ctx: BenchContext) -> ContenderSession:
    """``DockerCommandLineCodeExecutor``: each code block is a file in a bound folder run by a
    new interpreter through ``docker exec`` (no state kept between blocks)."""
    from autogen_core import CancellationToken
    from autogen_core.code_executor import CodeBlock
    from autogen_ext.code_executors.docker import DockerCommandLineCodeExecutor

    name, _ = ctx.new_session()
    work = await anyio.to_thread.run_sync(_readable_temp_dir)
    executor = DockerCommandLineCodeExecutor(
        image=ctx.image, container_name=f"{ctx.name_prefix}-{name}", work_dir=work, timeout=60
    )
    try:
        await executor.start()
    except BaseException:
        await executor.stop()
        shutil.rmtree(work, ignore_errors=True)
        raise

    async def run(code: str) -> str:
        block = CodeBlock(code=code, language="python")
        result = await executor.execute_code_blocks([block], CancellationToken())
        return str(result.output)

    async def close() -> None:
        try:
            await executor.stop()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return ContenderSession(run, close, {"name": f"{ctx.name_prefix}-{name}"})


async def smolagents_local(ctx: BenchContext) -> ContenderSession:
    """``LocalPythonExecutor``: smolagents' AST interpreter in this very process. Not a
    security boundary: there is no sandbox, so no memory of its own to report either."""
    from smolagents.local_python_executor import LocalPythonExecutor

    executor = LocalPythonExecutor(additional_authorized_imports=[])
    executor.send_tools({})

    async def run(code: str) -> str:
        output = await anyio.to_thread.run_sync(executor, code)
        return str(output.logs)

    async def close() -> None:
        return None

    return ContenderSession(run, close)
