"""``ToolBridge``: host tools served to one sandbox over a Unix socket, checked and audited.

    async with ToolBridge(sandbox, registry, allow=["search"], call_budget=100) as bridge:
        await sandbox.exec("from execloop_tools import search\\nprint(search('x'))")
    bridge.trace  # one ToolCallRecord per call

Where things are (host → sandbox, the contract's ``control_dir`` → ``GUEST_CONTROL_DIR``):
``control_dir/tools.sock`` → ``/run/execloop/tools.sock``, and the generated module
``control_dir/lib/execloop_tools.py`` → ``/run/execloop/lib`` (read-only for the sandbox user).
Any sandbox offering ``Capability.TOOLS`` can host the bridge.
Attaching runs one short ``exec`` in the session that puts that directory on ``sys.path`` and
``PYTHONPATH`` and sets ``EXECLOOP_TOOLS_TOKEN``: the token lives only in the session's
environment, never in a file; the socket itself is mode 0600, owned by the sandbox's user.
After a sandbox's ``restart()`` (a fresh interpreter, a new ``control_dir``) the bridge attaches
again: same tools, same token, same audit trail and call budget.

What each call goes through is ``gate.CallGate``; the wire format is described in ``guest.py``.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from execloop.errors import ConfigError, SandboxError
from execloop.runtime.bridge.gate import CallGate, ToolCallRecord, internal_error_reply
from execloop.runtime.bridge.guest import SOCKET_ENV, TOKEN_ENV
from execloop.runtime.bridge.registry import ToolRegistry
from execloop.runtime.bridge.stubs import MODULE_NAME, render_module, render_tool_api
from execloop.runtime.bridge.tool import Tool
from execloop.sandboxes.base import GUEST_CONTROL_DIR, Capability, Sandbox
from execloop.sandboxes.channel import private_unix_listener

__all__ = ["GUEST_DIR", "SOCKET_NAME", "ToolBridge"]

SOCKET_NAME = "tools.sock"
GUEST_DIR = GUEST_CONTROL_DIR
_LIB = "lib"

log = logging.getLogger("execloop.runtime.bridge")

# Runs once in the session: no names are left behind in the user's namespace. Index 1 of
# sys.path because ``exec_file`` swaps index 0 for the script's directory while it runs.
_ATTACH = """
def _execloop_attach(env, lib):
    import os, sys
    os.environ.update(env)
    if lib not in sys.path:
        sys.path.insert(1, lib)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if lib not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([lib, *paths])
    sys.modules.pop({module!r}, None)
_execloop_attach({env!r}, {lib!r})
del _execloop_attach
"""


class ToolBridge:
    """Serves ``allow``-ed tools of ``registry`` to one started sandbox (``async with``)."""

    def __init__(
        self,
        sandbox: Sandbox,
        registry: ToolRegistry,
        *,
        allow: Sequence[str],
        call_budget: int = 1000,
        call_timeout_s: float = 30.0,
        max_request_bytes: int = 16 * 1024 * 1024,
        guest_dir: str = GUEST_DIR,
    ) -> None:
        unknown = sorted(set(allow) - set(registry.names))
        if unknown:
            raise ConfigError(
                f"allowed tools {unknown} are not registered; registered: {registry.names}"
            )
        if call_budget < 0 or call_timeout_s <= 0:
            raise ConfigError("call_budget must be >= 0 and call_timeout_s > 0")
        self.sandbox = sandbox
        self.tools: list[Tool] = [registry.get(name) for name in sorted(set(allow))]
        self.max_request_bytes = max_request_bytes
        self.guest_dir = guest_dir
        self._token = secrets.token_urlsafe(32)
        self.gate = CallGate(
            self.tools, token=self._token, call_budget=call_budget, call_timeout_s=call_timeout_s
        )
        self._host_dir: Path | None = None
        self._listener: anyio.abc.SocketListener | None = None
        self._serving: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._forget_restart: Callable[[], None] | None = None

    @property
    def trace(self) -> list[ToolCallRecord]:
        """One audit record per call, in the order the calls ended."""
        return self.gate.trace

    @property
    def calls_used(self) -> int:
        return self.gate.calls_used

    @property
    def api(self) -> str:
        """The allowed tools as Python signatures, for the model's prompt."""
        return render_tool_api(self.tools)

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        name = type(self.sandbox).__name__
        if Capability.TOOLS not in self.sandbox.capabilities:
            raise ConfigError(
                f"{name} cannot host tools: its code cannot import {MODULE_NAME} from "
                f"{self.guest_dir} (capabilities: {sorted(self.sandbox.capabilities)})"
            )
        socket_dir = self.sandbox.control_dir
        if socket_dir is None or self.sandbox.closed:
            raise ConfigError(
                f"the tool bridge needs a started sandbox; this {name} has no control directory "
                "(start it first: `async with` the sandbox, then the bridge)"
            )
        if (socket_dir / SOCKET_NAME).exists():
            raise ConfigError("a tool bridge is already attached to this sandbox")
        try:
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            await self._serve_in(socket_dir)
            await self._attach()
            self._forget_restart = self.sandbox.on_restart(self._reattach)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _serve_in(self, socket_dir: Path) -> None:
        """Put the module and the listening socket in ``socket_dir`` and serve there."""
        self._host_dir = socket_dir
        lib = socket_dir / _LIB
        lib.mkdir(exist_ok=True)
        lib.chmod(0o755)  # the control dir may be 0o711, and imports need to list a directory
        module = lib / f"{MODULE_NAME}.py"
        module.write_text(render_module(self.tools), encoding="utf-8")
        module.chmod(0o644)
        # Only the sandbox's user can connect (mode 0600, handed over when we are root);
        # the token guards the calls too.
        owner = self.sandbox.control_owner
        self._listener = await private_unix_listener(socket_dir / SOCKET_NAME, owner=owner)
        assert self._task_group is not None
        self._serving = await self._task_group.start(self._serve, self._listener)

    async def _serve(
        self,
        listener: anyio.abc.SocketListener,
        *,
        task_status: anyio.abc.TaskStatus[anyio.CancelScope],
    ) -> None:
        """Accept on ``listener`` until its scope is cancelled; calls run in the bridge's
        task group, so a re-attach does not cut the ones in flight."""
        assert self._task_group is not None
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await listener.serve(self._handle, self._task_group)

    async def _reattach(self) -> None:
        """After the sandbox's restart: serve in its new control directory, attach again."""
        await self._stop_serving()
        socket_dir = self.sandbox.control_dir
        if socket_dir is None:
            raise SandboxError("the restarted sandbox has no control directory for the bridge")
        await self._serve_in(socket_dir)
        await self._attach()

    async def _stop_serving(self) -> None:
        """Stop accepting and remove the socket and the module (the directory may be gone)."""
        with anyio.CancelScope(shield=True):
            if self._serving is not None:
                self._serving.cancel()
                self._serving = None
            if self._listener is not None:
                await self._listener.aclose()
                self._listener = None
            if self._host_dir is not None:
                (self._host_dir / SOCKET_NAME).unlink(missing_ok=True)
                shutil.rmtree(self._host_dir / _LIB, ignore_errors=True)
                self._host_dir = None

    async def _attach(self) -> None:
        env = {TOKEN_ENV: self._token, SOCKET_ENV: f"{self.guest_dir}/{SOCKET_NAME}"}
        code = _ATTACH.format(module=MODULE_NAME, env=env, lib=f"{self.guest_dir}/{_LIB}")
        result = await self.sandbox.exec(code, timeout=30)
        if not result.ok:
            raise SandboxError(
                f"could not attach the tool bridge ({result.exit_reason.value}): "
                f"{result.stderr[-1000:]}"
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving (in-flight calls are cancelled) and remove the socket and the module."""
        if self._forget_restart is not None:
            self._forget_restart()
            self._forget_restart = None
        if self._task_group is not None:
            # The group's own scope is shielded (a new scope here would break LIFO exit), so an
            # outer cancellation cannot interrupt the teardown.
            self._task_group.cancel_scope.cancel()
            self._task_group.cancel_scope.shield = True
            await self._task_group.__aexit__(None, None, None)
            self._task_group = None
        await self._stop_serving()

    # -- serving ---------------------------------------------------------------------------
    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        """One connection, one call. Each connection runs in its own task."""
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            line: bytes | None = None  # None: larger than max_request_bytes
            with anyio.move_on_after(self.gate.call_timeout_s) as waiting:
                try:
                    line = await reader.receive_until(b"\n", self.max_request_bytes)
                except anyio.DelimiterNotFound:
                    pass
                except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                    return  # the caller went away before asking anything
            if waiting.cancelled_caught:
                return  # a silent client holds no task
            try:
                reply = await self.gate.handle(line)
            except Exception:  # a bug here must not take the whole bridge down
                log.exception("the tool bridge failed to serve a call")
                reply = internal_error_reply()
            try:
                await stream.send(reply)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                log.info("a sandboxed caller left before its tool reply was sent")
