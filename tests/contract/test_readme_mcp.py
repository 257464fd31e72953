"""Every block of the README's "MCP server" section runs as written (the HTTP port is swapped
for a free one, so parallel runs cannot collide): Claude Code's `claude mcp add` with the
Claude Agent SDK's bundled CLI, the JSON entry through the MCP Inspector's --config, HTTP with
a token, and the Claude Agent SDK example against the loopback streaming fake."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import claude_agent_sdk
import httpx2

from tests.fakes.anthropic_server import FakeAnthropicServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV_BIN = str(Path(sys.executable).parent)
CLAUDE = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
QUIET = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
}


def _blocks(language: str) -> list[str]:
    section = README.read_text(encoding="utf-8").split("\n## MCP server\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's shell: the venv's `execloop` and a `claude` on PATH, a fresh HOME."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "claude").exists():
        (bin_dir / "claude").symlink_to(CLAUDE)
    path = f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}"
    return {**os.environ, **QUIET, "PATH": path, "HOME": str(tmp_path), **extra}


def _bash(script: str, *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


def test_the_section_has_the_blocks_this_test_runs() -> None:
    assert [len(_blocks(lang)) for lang in ("bash", "json", "python")] == [3, 1, 1]


def test_claude_code_adds_and_connects_to_execloop(tmp_path: Path) -> None:
    added = _bash(_blocks("bash")[0], env=_env(tmp_path), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "execloop: execloop mcp --backend local - ✔ Connected" in added.stdout


def test_the_json_entry_runs_python_through_the_inspector(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(_blocks("json")[0])
    assert json.loads(config.read_text())["mcpServers"]["execloop"]["command"] == "execloop"
    inspector = ["npx", "--prefix", str(ROOT / "build" / "inspector"), "--offline", "inspector"]
    target = ["--config", str(config), "--server", "execloop"]
    call = ["--method", "tools/call", "--tool-name", "run_python", "--tool-arg", "code=print(6*7)"]
    called = subprocess.run(
        [*inspector, "--cli", *target, *call],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["structuredContent"]["stdout"] == "42\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_http_with_a_token_as_written(tmp_path: Path) -> None:
    port = str(_free_port())
    serve, call = (block.replace("8765", port) for block in _blocks("bash")[1:3])
    token_line, serve_line = serve.strip().splitlines()
    token = _bash(token_line + '\necho "$EXECLOOP_MCP_TOKEN"', env=_env(tmp_path), cwd=ROOT)
    env = _env(tmp_path, EXECLOOP_MCP_TOKEN=token.stdout.strip())
    assert len(env["EXECLOOP_MCP_TOKEN"]) >= 32
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve_line}"], env=env, cwd=ROOT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx2.post(f"http://127.0.0.1:{port}/mcp", json={}).status_code == 401
                break
            except httpx2.TransportError:
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.1)
        called = _bash(call, env=env, cwd=ROOT)
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["structuredContent"]["stdout"] == "42\n"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_the_claude_agent_sdk_example_against_the_fake(tmp_path: Path) -> None:
    with FakeAnthropicServer() as fake:
        fake.push_reply(tool_name="mcp__execloop__run_python", tool_input={"code": "print(6*7)"})
        fake.push_reply(text="6 * 7 = 42")
        env = _env(tmp_path, ANTHROPIC_BASE_URL=fake.base_url, ANTHROPIC_API_KEY="sk-fake")
        ran = subprocess.run(
            [sys.executable, "-c", _blocks("python")[0]],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=180,
            check=False,
        )
        tool_results = [
            block
            for request in fake.requests[1:]
            for block in request.body["messages"][-1]["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "success 6 * 7 = 42"
    (result,) = tool_results
    output = json.loads(result["content"])  # the CLI hands the model the structured content
    assert output["stdout"] == "42\n" and output["exit_reason"] == "ok"
