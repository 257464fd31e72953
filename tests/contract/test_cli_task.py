"""`execloop task` end to end on the real daemon: what the sandbox prints reaches a terminal
inert, and ``--json`` keeps it exact."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred"
SCRIPT = f"print({HOSTILE!r})\n"


def _replies(tmp_path: Path) -> str:
    path = tmp_path / "replies.json"
    path.write_text(json.dumps([SCRIPT]))
    return f"scripted:{path}"


def _on_a_terminal(args: list[str]) -> tuple[int, bytes]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; its exit status and screen."""
    main, tty = pty.openpty()
    command = [sys.executable, "-m", "execloop.runtime.cli", *args]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=tty, stderr=tty) as process:
        os.close(tty)
        screen = bytearray()
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        status = process.wait(timeout=300)
    os.close(main)
    return status, bytes(screen)


def test_sandbox_output_reaches_the_terminal_inert(tmp_path: Path) -> None:
    status, screen = _on_a_terminal(["task", "print a greeting", "--model", _replies(tmp_path)])
    assert status == 0, screen.decode(errors="replace")
    plain = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", screen)  # without the CLI's own colours
    assert b"passed after 1 attempt(s)" in plain
    for raw in (b"\x1b]0;", b"\x07", b"\x1b[2J"):
        assert raw not in screen
    assert b"\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mred" in screen  # spelled out, visible


def test_json_keeps_the_answer_exact(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "execloop.runtime.cli", "task", "print a greeting"]
    done = subprocess.run(
        [*command, "--model", _replies(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == HOSTILE + "\n"
