"""execloop.toml's [[tools.mcp]] sources: `execloop task` connects the tool bridge to them and
the task's script calls their tools (a real MCP server over stdio, the local backend)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_task_calls_a_tool_of_a_configured_mcp_server(tmp_path: Path) -> None:
    (tmp_path / "execloop.toml").write_text(
        '[sandbox]\nbackend = "local"\n\n[[tools.mcp]]\n'
        f"command = [{json.dumps(sys.executable)}, '-m', 'tests.fakes.mcp_echo_server']\n"
        f"cwd = {json.dumps(str(REPO))}\nprefix = 'e_'\n"
    )
    script = (
        "import json\nfrom execloop_tools import e_echo\n"
        'json.dump({"said": e_echo(text="ab", times=2)}, open("result.json", "w"))\n'
    )
    (tmp_path / "replies.yaml").write_text(yaml.safe_dump([{"script": script}]))
    done = subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", "task", "Echo twice", "--json",
         "--check", 'result["said"] == "abab"', "--model", "scripted:replies.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "passed" and json.loads(result["answer"]) == {"said": "abab"}
    assert result["usage_classic_estimate"]["calls"] == 1  # the call went through the bridge
