"""A smolagents ``RemotePythonExecutor`` (smolagents 1.26) that runs a ``CodeAgent``'s code in
one execloop sandbox: ``CodeAgent(tools=..., model=..., executor=ExecloopExecutor())``.

smolagents calls executors synchronously, so the sandbox lives on an event loop of its own (an
anyio blocking portal) from the first call until ``cleanup()``, which ``CodeAgent.cleanup()``
and ``with CodeAgent(...)`` call. Tools are sent as source code and run inside the sandbox;
their definitions and the agent's variables are replayed into a new sandbox when the old one
ended (timeout, memory). ``final_answer(...)`` raises smolagents' ``FinalAnswerException``
inside the sandbox; a wrapper around each step writes its serialized value to a workspace file
that is read back and decoded by smolagents itself. A failing step raises ``AgentError`` with
the exit reason, status, output and traceback, which ``CodeAgent`` records as the step's error
before it goes on. Like the Jupyter-less remote executors, a step's ``output`` is None unless it
is the final answer: the model sees what the code prints.
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal

from execloop.runtime.executors.session import (
    OUTPUT_CHARS,
    SandboxSession,
    check_output_chars,
    missing_extra,
    render,
)
from execloop.sandboxes import ExecResult, Sandbox, SandboxSpec

try:
    from smolagents.local_python_executor import CodeOutput
    from smolagents.monitoring import AgentLogger, LogLevel
    from smolagents.remote_executors import RemotePythonExecutor
    from smolagents.tools import Tool
    from smolagents.utils import AgentError
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="smolagents") from exc

__all__ = ["ExecloopExecutor"]

# an exec's result, the note on a replaced sandbox, and the encoded final answer if any
_Step = tuple[ExecResult, str, str | None]

# Where the wrapper leaves a final answer (workspace-relative; removed once read).
ANSWER_FILE = ".execloop-final-answer"

# Runs one step; its source is registered with linecache so that tracebacks show its lines.
_WRAPPER = """\
import linecache as _execloop_linecache
_execloop_code, _execloop_name = {code!r}, "<step-{number}>"
_execloop_linecache.cache[_execloop_name] = (
    len(_execloop_code), None, _execloop_code.splitlines(True), _execloop_name
)
try:
    exec(compile(_execloop_code, _execloop_name, "exec"), globals())
except BaseException as _execloop_exc:
    if type(_execloop_exc).__name__ != {exception!r}:
        raise
    with open({path!r}, "w", encoding="utf-8") as _execloop_file:
        _execloop_file.write(_execloop_exc.value)
    del _execloop_file
    print({sentinel!r})
finally:
    del _execloop_linecache, _execloop_code, _execloop_name
"""


class ExecloopExecutor(RemotePythonExecutor):  # type: ignore[misc]
    """Runs a ``CodeAgent``'s code in one stateful execloop sandbox (``spec`` picks the backend
    and limits). The sandbox has no network: ``additional_imports`` are not installed, they
    must already be in the image (the ``local`` backend uses this Python's packages)."""

    def __init__(
        self,
        *,
        spec: SandboxSpec | Mapping[str, Any] | None = None,
        logger: AgentLogger | None = None,
        additional_imports: list[str] | None = None,
        allow_pickle: bool = False,
        max_output_chars: int = OUTPUT_CHARS,
    ) -> None:
        super().__init__(
            list(additional_imports or []),
            # quiet by default: the CodeAgent's own logger reports each step and its error
            logger if logger is not None else AgentLogger(level=LogLevel.OFF),
            allow_pickle,
        )
        self.session = SandboxSession(spec=spec, on_start=self._replay)
        self.max_output_chars = check_output_chars(max_output_chars)
        # the code that defined variables and tools, replayed into a replacement sandbox
        self._prelude: dict[str, str] = {}
        self._recording: str | None = None
        self._steps = 0
        self._sentinel = f"execloop-final-answer-{secrets.token_hex(8)}"
        self._loop: _LoopThread | None = None

    # -- smolagents' interface -------------------------------------------------------------
    def run_code_raise_errors(self, code: str) -> CodeOutput:
        if self._recording is not None:
            self._prelude[self._recording] = code
        result, note, answer = self._call(self._run_step, code)
        text = render(result, note=note, limit=self.max_output_chars)
        if not result.ok:
            raise AgentError(text, self.logger)
        if answer is None:
            return CodeOutput(output=None, logs=text, is_final_answer=False)
        value = self._deserialize_final_answer(answer, self.allow_pickle)
        return CodeOutput(output=value, logs=text, is_final_answer=True)

    def send_tools(self, tools: dict[str, Tool]) -> None:
        with self._record("tools"):
            super().send_tools(tools)

    def send_variables(self, variables: dict[str, Any]) -> None:
        with self._record("variables"):
            super().send_variables(variables)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Nothing is installed (the sandbox has no network); the packages must be in the
        image already."""
        if additional_imports:
            self.logger.log(
                f"execloop does not install packages in the sandbox: {additional_imports}",
                level=LogLevel.INFO,
            )
        return []

    def cleanup(self) -> None:
        """Close the sandbox and its event loop (idempotent; also run at interpreter exit)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        atexit.unregister(self.cleanup)
        try:
            loop.portal.call(self.session.aclose)
        finally:
            loop.stop()

    # -- internals ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _record(self, kind: str) -> Iterator[None]:
        """Keep the code smolagents sends while defining tools or variables, to replay it."""
        self._recording = kind
        try:
            yield
        finally:
            self._recording = None

    def _call(self, func: Callable[[str], Awaitable[_Step]], code: str) -> _Step:
        if self._loop is None:
            self._loop = _LoopThread()
            atexit.register(self.cleanup)  # a forgotten cleanup() must not leave a sandbox
        return self._loop.portal.call(func, code)

    async def _run_step(self, code: str) -> _Step:
        self._steps += 1
        wrapped = _WRAPPER.format(
            code=code,
            number=self._steps,
            exception=self.FINAL_ANSWER_EXCEPTION,
            path=ANSWER_FILE,
            sentinel=self._sentinel,
        )
        result, note = await self.session.exec(wrapped)
        logs, found, _ = result.stdout.rpartition(self._sentinel + "\n")
        if not (result.ok and found):
            return result, note, None
        sandbox = self.session.sandbox
        assert sandbox is not None
        answer = (await sandbox.read_file(ANSWER_FILE)).decode("utf-8")
        await sandbox.exec(f"import os\nos.remove({ANSWER_FILE!r})")
        return result.model_copy(update={"stdout": logs}), note, answer

    async def _replay(self, sandbox: Sandbox) -> None:
        for code in self._prelude.values():
            result = await sandbox.exec(code)
            if not result.ok:
                raise AgentError(
                    "the agent's tools could not be defined again in a new sandbox:\n"
                    + render(result, limit=self.max_output_chars),
                    self.logger,
                )


class _LoopThread:
    """An event loop in a daemon thread, reached through a blocking portal. Daemon, unlike
    anyio's ``start_blocking_portal`` (a thread pool's thread, joined at exit): a program that
    never calls ``cleanup()`` must still exit (the atexit hook then closes the sandbox)."""

    def __init__(self) -> None:
        handoff: queue.Queue[BlockingPortal | BaseException] = queue.Queue()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                handoff.put(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # reported to the caller waiting for the portal
                handoff.put(exc)

        self._thread = threading.Thread(target=run, name="execloop-smolagents", daemon=True)
        self._thread.start()
        got = handoff.get()
        if isinstance(got, BaseException):
            raise got
        self.portal = got

    def stop(self) -> None:
        self.portal.call(self.portal.stop)
        self._thread.join()
