"""Live output (``exec(..., on_output=...)``), the same assertions on every backend.

Streaming is proved without timing: the script prints ``a`` and then waits for a file that the
test creates only once ``a`` has reached ``on_output``. Without streaming the file never
appears and the exec times out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from execloop.sandboxes import ExitReason
from execloop.sandboxes.base import GUEST_CONTROL_DIR, Capability, Sandbox

from .backends import BACKEND_SPECS, make_sandbox

pytestmark = pytest.mark.anyio

_HANDSHAKE = """
try:
    import time
    pause = lambda: time.sleep(0.01)
except Exception:  # the restricted backend imports no time module: spin
    pause = lambda: None
print('a', flush=True)
while True:
    try:
        open({path!r}).close()
        break
    except OSError:
        pause()
print('b', flush=True)
"""


@pytest.fixture(params=list(BACKEND_SPECS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _shared_dir(sandbox: Sandbox) -> tuple[Path, str]:
    """A host folder the running code sees, and where it sees it: the control directory, or
    the restricted backend's workspace (a host folder it runs in)."""
    if sandbox.control_dir is not None:
        return sandbox.control_dir, GUEST_CONTROL_DIR
    workspace = getattr(sandbox, "workspace", None)
    assert isinstance(workspace, Path), "a backend needs a folder for the handshake"
    return workspace, str(workspace)


async def test_output_arrives_while_the_script_runs(backend: str) -> None:
    seen: list[tuple[str, str]] = []
    async with make_sandbox(backend) as sandbox:
        assert Capability.STREAMING in sandbox.capabilities
        host_dir, guest_dir = _shared_dir(sandbox)
        go = host_dir / "go"

        def on_output(stream: str, text: str) -> None:
            seen.append((stream, text))
            if "a" in "".join(t for s, t in seen if s == "stdout"):
                go.touch(mode=0o644)

        result = await sandbox.exec(
            _HANDSHAKE.format(path=f"{guest_dir}/go"), timeout=60, on_output=on_output
        )
    assert result.exit_reason is ExitReason.OK, result.stderr
    assert result.stdout == "a\nb\n"  # the result is what it is without streaming
    assert "".join(t for s, t in seen if s == "stdout") == "a\nb\n"


async def test_streamed_output_is_bounded_per_stream(backend: str) -> None:
    seen = {"stdout": "", "stderr": ""}

    def on_output(stream: str, text: str) -> None:
        seen[stream] += text

    code = "print('é' * 20000)\nprint('after')"  # 40000 bytes of two-byte characters
    async with make_sandbox(backend, max_output_bytes="16k") as sandbox:
        result = await sandbox.exec(code, on_output=on_output)
        plain = await sandbox.exec("print('quiet')")
    assert result.stdout_truncated
    assert len(seen["stdout"].encode()) <= 16 * 1024
    assert seen["stdout"].startswith("é" * 1000)
    assert "after" not in seen["stdout"]  # delivery stopped at the bound
    assert plain.stdout == "quiet\n"  # without on_output nothing streams, nothing breaks


async def test_streaming_keeps_the_output_limit_and_os_exit_semantics(backend: str) -> None:
    seen: list[str] = []
    flood = "while True:\n    print('y' * 1000)"
    async with make_sandbox(backend, max_output_bytes="4k", output_limit_bytes="64k") as sandbox:
        stopped = await sandbox.exec(flood, timeout=60, on_output=lambda s, t: seen.append(t))
        after = await sandbox.exec("print('still here')", on_output=lambda s, t: seen.append(t))
    assert stopped.exit_reason is ExitReason.OUTPUT_LIMIT
    assert after.stdout == "still here\n"
    assert seen[-1] == "still here\n"  # nothing of the flood arrived after its exec ended
    assert len("".join(seen[:-1]).encode()) <= 4 * 1024


async def test_os_exit_delivers_the_streamed_output_first(backend: str) -> None:
    seen: list[str] = []
    code = "import os\nprint('bye', flush=True)\nos._exit(3)"
    async with make_sandbox(backend) as sandbox:
        result = await sandbox.exec(code, on_output=lambda s, t: seen.append(t))
    if backend == "restricted":  # RestrictedPython refuses `_` names: no os._exit at all
        assert result.exit_code == 1 and "_exit" in "".join(seen)
        return
    assert (result.exit_code, result.stdout) == (3, "bye\n")
    assert "".join(seen) == "bye\n"
