"""The MCP server's table of open sandboxes, keyed by the ``session_id`` handle it hands out.

MCP's newest protocol has no transport session, so state across ``run_python`` calls rides on
an explicit handle in the tool's arguments (as E2B's ``sandbox_id``). Stateless clients never
say goodbye: a session idle for ``ttl_s`` is closed by ``reap_idle`` (the server runs it in a
loop), the table holds at most ``max_sessions``, and ``close_all`` ends every one when the
server stops. One exec at a time per session (a lock), many sessions side by side.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from execloop.errors import ConfigError
from execloop.sandboxes import Sandbox, SandboxSpec

__all__ = ["McpSession", "SessionTable", "UnknownSessionError"]

log = logging.getLogger("execloop.runtime.mcp_sessions")


class UnknownSessionError(ConfigError):
    """No open session has this handle (never opened, closed, idle past its TTL, or ended)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session_id {session_id!r} names no open session (it was closed, idle past its "
            "TTL, or its sandbox ended); leave session_id out to start a new one"
        )
        self.session_id = session_id


@dataclass
class McpSession:
    """One MCP client's open sandbox behind a ``session_id``, and when it was last used."""

    id: str
    sandbox: Sandbox
    spec: SandboxSpec
    used_at: float = field(default_factory=time.monotonic)
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class SessionTable:
    """Open sandboxes by handle; see the module docstring."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_sessions: int,
        sandbox_factory: Callable[[SandboxSpec], Sandbox],
    ) -> None:
        if not ttl_s > 0 or max_sessions < 1:
            raise ConfigError("session ttl_s must be positive and max_sessions at least 1")
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._factory = sandbox_factory
        self._sessions: dict[str, McpSession] = {}
        self._opening = 0  # starts in flight count against the cap too
        self._closed = False

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def ids(self) -> list[str]:
        return list(self._sessions)

    def get(self, session_id: str) -> McpSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSessionError(session_id)
        session.used_at = time.monotonic()
        return session

    async def open(self, spec: SandboxSpec) -> McpSession:
        """Start a sandbox for ``spec`` and file it under a new handle."""
        if self._closed:
            raise ConfigError("the server is stopping; no new session can be opened")
        if len(self._sessions) + self._opening >= self.max_sessions:
            raise ConfigError(
                f"{self.max_sessions} sessions are open (max_sessions): pass the session_id of "
                "one of them, close one with close_session, or wait until one is idle for "
                f"{self.ttl_s:g} s"
            )
        self._opening += 1
        try:
            sandbox = self._factory(spec)
            await sandbox.__aenter__()  # a failed start closes what it made
        finally:
            self._opening -= 1
        session = McpSession(id=uuid.uuid4().hex[:16], sandbox=sandbox, spec=spec)
        if self._closed:  # the server stopped while this one started
            await _close(session)
            raise ConfigError("the server is stopping; no new session can be opened")
        self._sessions[session.id] = session
        log.info("session %s opened (%s backend)", session.id, spec.backend)
        return session

    async def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise UnknownSessionError(session_id)
        await _close(session)

    async def discard(self, session: McpSession) -> None:
        """Close ``session`` if it is still filed (its sandbox ended or failed)."""
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        await _close(session)

    async def reap_idle(self) -> list[str]:
        """Close the sessions idle for longer than the TTL (none busy running code)."""
        now = time.monotonic()
        idle = [
            s
            for s in self._sessions.values()
            if now - s.used_at > self.ttl_s and not s.lock.locked()
        ]
        for session in idle:
            self._sessions.pop(session.id, None)
            log.info("session %s closed after %.0f s idle", session.id, now - session.used_at)
            await _close(session)
        return [session.id for session in idle]

    async def reap_forever(self) -> None:
        """``reap_idle`` every quarter of the TTL (at most every 30 s) until cancelled."""
        while True:
            await anyio.sleep(min(self.ttl_s / 4, 30.0))
            await self.reap_idle()

    async def close_all(self) -> None:
        """Close every session (shielded: the server is stopping, maybe cancelled)."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            while self._sessions:
                _, session = self._sessions.popitem()
                await _close(session)


async def _close(session: McpSession) -> None:
    try:
        await session.sandbox.close()
    except Exception:  # closing one must not keep the others open
        log.exception("session %s did not close cleanly", session.id)
