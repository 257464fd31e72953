"""The tool bridge, attacked from inside the sandbox over its own socket: malformed frames,
huge and non-UTF-8 payloads, bad nesting, wrong tokens, tools outside the allowlist, silent
connections; and from the host's side of its lifecycle: a token replayed after the bridge
was re-attached, calls after the task (the bridge) ended.

There is no weakened bridge: each script's control is in the same run, a well-formed call
before and after the attack that must answer 5, so a refusal is specific (the bridge works,
it refused *this*) and the bridge survives it.
"""

from __future__ import annotations

import json

from execloop.runtime.bridge import ToolBridge, ToolRegistry
from execloop.runtime.bridge.guest import TOKEN_ENV
from execloop.sandboxes import Sandbox

from .attacks import ISOLATING, Attack, Category, Decoys, HostAttack, blocked

__all__ = ["BRIDGE_ATTACKS", "BRIDGE_HOST_ATTACKS", "bridge_registry"]

B = Category.BRIDGE
ALLOWED = ["add"]


def bridge_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    def add(a: int, b: int) -> int:
        """``a + b``."""
        return a + b

    @registry.tool
    def secret() -> str:
        """Registered on the host, never allowed to the sandbox."""
        return "the host's secret"

    return registry


CLIENT = """
import json, os, socket
def ask(raw):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(os.environ['EXECLOOP_TOOLS_SOCKET'])
        try:
            sock.sendall(raw)
        except OSError:
            pass  # the host stopped reading a request past its size limit
        chunks = []
        while True:
            try:
                chunk = sock.recv(1 << 16)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    data = b''.join(chunks)
    return json.loads(data) if data else None
def frame(**fields):
    return (json.dumps(fields) + '\\n').encode()
TOKEN = os.environ['EXECLOOP_TOOLS_TOKEN']
GOOD = frame(token=TOKEN, tool='add', arguments={{'a': 2, 'b': 3}})
before = ask(GOOD)
"""

VERDICT = """
after = ask(GOOD)
works = before == after == {{'ok': True, 'result': 5}}
refused = isinstance(reply, dict) and reply.get('ok') is False or reply is None
print('BLOCKED' if works and refused else 'ESCAPED', 'control', before, after, 'attack', reply)
"""


def _attack(name: str, code: str) -> Attack:
    return Attack(name, B, ISOLATING, CLIENT + code + VERDICT, blocked(), None, None, bridge=True)


SILENT = """
idle = []
for _ in range(200):
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.environ['EXECLOOP_TOOLS_SOCKET'])
    idle.append(sock)
reply = None if ask(GOOD) == {{'ok': True, 'result': 5}} else 'starved'
for sock in idle:
    sock.close()
"""

BRIDGE_ATTACKS = [
    _attack("a malformed frame", "reply = ask(b'{{not json\\n')"),
    _attack("a non-UTF-8 frame", 'reply = ask(b\'\\xff\\xfe{{"tool": "add"}}\\n\')'),
    _attack(
        "a lone surrogate in the arguments",
        "reply = ask(frame(token=TOKEN, tool='add', arguments={{'a': '\\ud800', 'b': 1}}))",
    ),
    _attack("JSON nested 100000 deep", "reply = ask(b'[' * 100000 + b']' * 100000 + b'\\n')"),
    _attack("a 24 MiB frame", "reply = ask(b'a' * (24 << 20))"),
    _attack(
        "a wrong token",
        "reply = ask(frame(token=TOKEN[::-1], tool='add', arguments={{'a': 1, 'b': 1}}))",
    ),
    _attack(
        "a tool outside the allowlist",
        "reply = ask(frame(token=TOKEN, tool='secret', arguments={{}}))",
    ),
    _attack(
        "arguments against the schema",
        "reply = ask(frame(token=TOKEN, tool='add', arguments={{'a': 'two', 'b': [1]}}))",
    ),
    _attack("200 silent connections", SILENT),
]

ASK_WITH = (
    CLIENT.replace("before = ask(GOOD)\n", "")
    + """
reply = ask(frame(token={token!r}, tool='add', arguments={{'a': 2, 'b': 3}}))
print(json.dumps(reply))
"""
)


async def _ask(sandbox: Sandbox, token: str) -> object:
    result = await sandbox.exec(ASK_WITH.format(token=token))
    if not result.ok:
        return f"the call itself failed: {result.stderr[-300:]}"
    return json.loads(result.stdout.splitlines()[-1])


async def replayed_token(sandbox: Sandbox, decoys: Decoys) -> str | None:
    async with ToolBridge(sandbox, bridge_registry(), allow=ALLOWED):
        old = (await sandbox.exec(f"import os\nprint(os.environ[{TOKEN_ENV!r}])")).stdout.strip()
    async with ToolBridge(sandbox, bridge_registry(), allow=ALLOWED):
        new = (await sandbox.exec(f"import os\nprint(os.environ[{TOKEN_ENV!r}])")).stdout.strip()
        replayed, control = await _ask(sandbox, old), await _ask(sandbox, new)
    if control != {"ok": True, "result": 5}:
        return f"the control call with the current token failed: {control}"
    if not isinstance(replayed, dict) or replayed.get("error", {}).get("type") != "bad_token":
        return f"the old token was accepted or misjudged: {replayed}"
    return None


async def after_the_end(sandbox: Sandbox, decoys: Decoys) -> str | None:
    async with ToolBridge(sandbox, bridge_registry(), allow=ALLOWED):
        token = (await sandbox.exec(f"import os\nprint(os.environ[{TOKEN_ENV!r}])")).stdout.strip()
        control = await _ask(sandbox, token)
    late = await sandbox.exec(ASK_WITH.format(token=token))
    if control != {"ok": True, "result": 5}:
        return f"the control call while attached failed: {control}"
    if late.ok or not any(
        name in late.stderr for name in ("FileNotFoundError", "ConnectionRefusedError")
    ):
        return f"a call after the bridge closed did not fail to connect: {late}"
    return None


BRIDGE_HOST_ATTACKS = [
    HostAttack("a token replayed after re-attaching", B, ISOLATING, replayed_token, bridge=True),
    HostAttack("a call after the task's bridge closed", B, ISOLATING, after_the_end, bridge=True),
]
