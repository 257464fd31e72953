"""A LangChain tool for LangGraph (langchain-core 1.8, langgraph 1.2) that keeps one execloop
sandbox per conversation thread: ``ThreadSandboxes().tool`` in a ``ToolNode`` or an agent's
tools, invoked with ``config={"configurable": {"thread_id": ...}}``.

Variables persist across calls of one thread and never leak to another. The number of live
sandboxes is bounded: past ``max_threads`` the least recently used thread's sandbox is closed,
and that thread's next call says its state is gone. A call without a thread id uses one shared
default sandbox. The tool is async (``graph.ainvoke``/``astream``). Its content is the text a
model should see (stdout, or the exit reason, status, stdout and stderr of a failure), and its
artifact, kept on ``ToolMessage.artifact`` and not sent to the model, is the whole
``ExecResult`` as JSON. ``async with ThreadSandboxes() as sandboxes`` or ``aclose()`` closes
every sandbox.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import anyio
from pydantic import BaseModel, Field

from execloop.errors import ConfigError
from execloop.runtime.executors.session import (
    OUTPUT_CHARS,
    SandboxSession,
    check_output_chars,
    missing_extra,
    render,
)
from execloop.sandboxes import SandboxSpec
from execloop.sandboxes.spec import coerce_spec

try:
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool, StructuredTool
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="langgraph") from exc

__all__ = ["DEFAULT_THREAD", "RunPythonInput", "ThreadSandboxes"]

DEFAULT_THREAD = "default"  # the sandbox of calls made without a thread id
_FORGOTTEN_KEPT = 1024  # evicted thread ids remembered, to tell them their state is gone

DESCRIPTION = (
    "Run Python code in an isolated sandbox (no network). Variables, imports and files in the "
    "working directory persist between calls in this conversation. Print what you need to see; "
    "on failure you get the exit reason, the output and the traceback."
)


class RunPythonInput(BaseModel):
    code: str = Field(description="Python source to run, as a script (use print for output).")


class ThreadSandboxes:
    """Sandboxes keyed by LangGraph ``thread_id``, at most ``max_threads`` at a time, and the
    ``tool`` (named ``name``) that runs code in the calling thread's sandbox."""

    def __init__(
        self,
        *,
        spec: SandboxSpec | Mapping[str, Any] | None = None,
        max_threads: int = 16,
        max_output_chars: int = OUTPUT_CHARS,
        name: str = "run_python",
        description: str = DESCRIPTION,
    ) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ConfigError(f"max_threads must be a positive integer, not {max_threads!r}")
        self.spec = coerce_spec(spec)
        self.max_threads = max_threads
        self.max_output_chars = check_output_chars(max_output_chars)
        self._sessions: OrderedDict[str, SandboxSession] = OrderedDict()  # oldest use first
        self._forgotten: OrderedDict[str, None] = OrderedDict()
        self._closing: set[SandboxSession] = set()
        self.tool: BaseTool = StructuredTool.from_function(
            coroutine=self._run_python,
            name=name,
            description=description,
            args_schema=RunPythonInput,
            response_format="content_and_artifact",
        )

    @property
    def threads(self) -> list[str]:
        """Thread ids that hold a sandbox, least recently used first."""
        return list(self._sessions)

    def session(self, thread_id: str) -> SandboxSession | None:
        return self._sessions.get(thread_id)

    async def _run_python(self, code: str, config: RunnableConfig) -> tuple[str, dict[str, Any]]:
        configurable = config.get("configurable") or {}
        thread_id = str(configurable.get("thread_id") or DEFAULT_THREAD)
        session, note, evicted = self._session_for(thread_id)
        for old in evicted:  # waits for an exec in flight there to end
            try:
                await old.aclose()
            finally:
                self._closing.discard(old)
        result, lost = await session.exec(code)
        text = render(result, note=note or lost, limit=self.max_output_chars)
        return text, result.model_dump(mode="json")

    def _session_for(self, thread_id: str) -> tuple[SandboxSession, str, list[SandboxSession]]:
        """The thread's session (now the most recently used), a note for the model, and the
        sessions evicted to make room (to close). No await here, so concurrent calls cannot
        both create a session for one thread."""
        session = self._sessions.get(thread_id)
        if session is not None:
            self._sessions.move_to_end(thread_id)
            return session, "", []
        evicted: list[SandboxSession] = []
        while len(self._sessions) >= self.max_threads:
            old_id, old = self._sessions.popitem(last=False)
            self._forgotten[old_id] = None
            self._closing.add(old)
            evicted.append(old)
        while len(self._forgotten) > _FORGOTTEN_KEPT:
            self._forgotten.popitem(last=False)
        session = SandboxSession(spec=self.spec)
        self._sessions[thread_id] = session
        note = ""
        if self._forgotten.pop(thread_id, "absent") is None:
            note = (
                "[execloop: new sandbox, earlier state is gone: this thread's sandbox was "
                f"closed to make room (max_threads={self.max_threads})]"
            )
        return session, note, evicted

    async def close_thread(self, thread_id: str) -> None:
        """Close one thread's sandbox (its next call starts a new one)."""
        session = self._sessions.pop(thread_id, None)
        if session is not None:
            await session.aclose()

    async def aclose(self) -> None:
        """Close every sandbox, including those being evicted."""
        sessions = [*self._sessions.values(), *self._closing]
        self._sessions.clear()
        with anyio.CancelScope(shield=True):
            for session in sessions:
                await session.aclose()
            self._closing.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
