"""`execloop run` / `execloop task` with bad and big inputs, shared workspaces and hostile
output, end to end on the real daemon: clear one-line errors, nothing started, nothing lost."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from execloop.sandboxes.reaper import LABEL_OWNER

_CLI = (sys.executable, "-m", "execloop.runtime.cli")
ESCAPES = "import sys\nsys.stdout.write('A\\x1b]0;pwned\\x07B\\x1b[2JC\\x9bD\\rE\\tF\\n')\n"


def _execloop(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the CLI; returns what it printed and its pid (to find what it started)."""
    with subprocess.Popen(
        [*_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "300"},  # long paths are not folded into two lines
    ) as proc:
        stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), proc.pid


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error as one line (the console wraps long lines at its width)."""
    assert "Traceback" not in done.stderr, done.stderr
    return " ".join(done.stderr.split())


def _containers_created_by(docker_client: Any, pid: int, since: float) -> list[str]:
    owner = f"{socket.gethostname()}:{pid}:"
    events = docker_client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "create"},
        decode=True,
    )
    return [
        event["id"][:12]
        for event in events
        if event.get("Actor", {}).get("Attributes", {}).get(LABEL_OWNER, "").startswith(owner)
    ]


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    script = tmp_path / "probe.py"
    script.write_text("import os\nprint(sorted(os.listdir('.')))\n")
    return script


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "ok.txt").write_text("fine")
    (folder / "x").symlink_to("/etc/shadow")
    return folder


def test_run_refuses_a_link_out_of_an_input_before_any_sandbox(
    probe: Path, leaky: Path, docker_client: Any
) -> None:
    began = time.time()
    done, pid = _execloop("run", str(probe), "--input", str(leaky))
    assert done.returncode == 2
    assert f"error: {leaky}/x is a symbolic link to /etc/shadow (/etc/shadow), outside" in (
        _one_line(done)
    )
    assert _containers_created_by(docker_client, pid, began) == []


def test_task_refuses_a_link_out_of_an_input(leaky: Path, tmp_path: Path) -> None:
    replies = tmp_path / "replies.yaml"
    replies.write_text('- "print(1)\\n"\n')
    done, _ = _execloop(
        "task", "Look at d", "--input", str(leaky), "--model", f"scripted:{replies}"
    )
    assert done.returncode == 2
    assert f"error: --input: {leaky}/x is a symbolic link to /etc/shadow" in _one_line(done)


def test_run_refuses_fifos_devices_and_sockets_as_inputs_or_scripts(
    probe: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done, _ = _execloop("run", str(probe), "--input", str(fifo))
    assert done.returncode == 2
    assert f"error: {fifo} is a fifo; only regular files and directories can be inputs" in (
        _one_line(done)
    )
    done, _ = _execloop("run", str(probe), "--input", "/dev/null")
    assert "error: /dev/null is a character device; only regular files" in _one_line(done)
    done, _ = _execloop("run", str(fifo))  # returns at once: the fifo is never read
    assert done.returncode == 2
    assert f"error: the script {fifo} is a fifo; give a Python file to run" in _one_line(done)
    done, _ = _execloop("run", "/dev/zero")
    assert done.returncode == 2
    assert "error: the script /dev/zero is a character device" in _one_line(done)


def test_an_input_larger_than_the_workspace_is_refused_before_any_container(
    probe: Path, tmp_path: Path, docker_client: Any
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:  # sparse: 2 GiB by size, nothing on disk
        handle.truncate(2 * 1024**3)
    began = time.time()
    done, pid = _execloop("run", str(probe), "--input", str(big))
    assert done.returncode == 2
    message = _one_line(done)
    assert "error: the inputs total 2.1 GB (largest:" in message
    assert "--workspace DIR" in message
    assert _containers_created_by(docker_client, pid, began) == []


def test_nested_directory_inputs_land_as_dirname_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.csv").write_text("x\n1\n2\n")
    script = tmp_path / "job.py"
    script.write_text("print(open('data/sub/a.csv').read().count('\\n'))\n")
    done, _ = _execloop("run", str(script), "--input", str(data), "--json")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["result"]["stdout"] == "3\n"
    assert {a["path"] for a in outcome["artifacts"]} == {"main.py", "data/sub/a.csv"}


def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    if os.geteuid() == 0:  # the sandbox never runs as root: it runs as the folder's owner
        os.chown(workspace, 1000, 1000)
    return workspace


def test_task_lays_a_directory_input_out_as_run_does(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "a.csv").write_text("x\n1\n2\n")
    replies = tmp_path / "replies.yaml"
    replies.write_text(
        "- \"import json\\nrows = open('data/sub/a.csv').read().count('\\\\n') - 1\\n"
        "json.dump({'rows': rows}, open('result.json', 'w'))\\n\"\n"
    )
    done, _ = _execloop(
        "task",
        "Count the rows of data/sub/a.csv",
        "--input",
        str(data),
        "--model",
        f"scripted:{replies}",
        "--check",
        'result["rows"] == 2',
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "passed", result["checks"]
    assert {"data/sub/a.csv", "main.py", "result.json"} <= {a["path"] for a in result["artifacts"]}


def test_a_workspace_never_loses_a_file(probe: Path, tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    (workspace / "main.py").write_text("# the user's own main.py\n")
    done, _ = _execloop("run", str(probe), "--workspace", str(workspace))
    assert done.returncode == 2
    assert (
        f"error: {workspace}/main.py exists; execloop will not overwrite it: move it or "
        "choose another workspace directory"
    ) in _one_line(done)
    assert (workspace / "main.py").read_text() == "# the user's own main.py\n"

    (workspace / "main.py").unlink()
    data = tmp_path / "data.csv"
    data.write_text("1,2\n")
    for _ in range(2):  # running again in the same workspace works: main.py was removed
        done, _ = _execloop("run", str(probe), "--workspace", str(workspace), "--input", str(data))
        assert done.returncode == 0, done.stderr
        assert "['data.csv', 'main.py']" in done.stdout
        assert sorted(os.listdir(workspace)) == ["data.csv"]

    data.write_text("3,4\n")  # the same name with other bytes: refused, the old kept
    done, _ = _execloop("run", str(probe), "--workspace", str(workspace), "--input", str(data))
    assert done.returncode == 2
    assert f"error: {workspace}/data.csv exists; execloop will not overwrite it" in (
        _one_line(done)
    )
    assert (workspace / "data.csv").read_text() == "1,2\n"

    main = tmp_path / "inputs" / "main.py"
    main.parent.mkdir()
    main.write_text("")
    done, _ = _execloop("run", str(probe), "--input", str(main))
    assert done.returncode == 2
    assert "would land as main.py, the name execloop reserves for the script" in _one_line(done)


@pytest.mark.parametrize("system", ["/etc", "/usr/local", "/"])
def test_a_system_directory_is_refused_as_a_workspace(probe: Path, system: str) -> None:
    done, _ = _execloop("run", str(probe), "--workspace", system)
    assert done.returncode == 2
    message = _one_line(done)
    assert f"error: workspace {system} is a system directory" in message
    assert "use a directory of your own" in message and "chown" not in message


def test_two_runs_sharing_a_workspace_never_run_each_others_script(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    first = tmp_path / "first.py"
    first.write_text(
        "import os, time\n"
        "while not os.path.exists('go'):\n"
        "    time.sleep(0.05)\n"
        "print('first ran; main.py is mine:', open('main.py').read().startswith('import os'))\n"
    )
    second = tmp_path / "second.py"
    second.write_text("print('second ran')\n")
    holder = subprocess.Popen(
        [*_CLI, "run", str(first), "--workspace", str(workspace), "--timeout", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (workspace / "main.py").exists():  # the first run holds the workspace
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline, "the first run never uploaded its script"
            time.sleep(0.1)
        done, _ = _execloop("run", str(second), "--workspace", str(workspace))
        assert done.returncode == 2
        assert (
            f"error: workspace {workspace} is in use by another execloop run (pid {holder.pid}:"
        ) in _one_line(done)
        (workspace / "go").write_text("")
        stdout, stderr = holder.communicate(timeout=300)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 0, stderr
    assert stdout == "first ran; main.py is mine: True\n"


def test_a_hundred_thousand_output_files_give_a_bounded_table_and_json(tmp_path: Path) -> None:
    script = tmp_path / "many.py"
    script.write_text(
        "import os\nos.mkdir('many')\n"
        "for i in range(100_000):\n"
        "    open(f'many/f{i:06}', 'w').close()\n"
        "open('many/z-last', 'w').write('x' * 2000)\n"
    )
    done, _ = _execloop("run", str(script), "--timeout", "300")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stderr.splitlines() if "many/f" in line or "main.py" in line]
    assert len(rows) == 50  # main.py and the first 49 of many/
    assert "… and 99,952 more files, 2.0 kB" in done.stderr  # many/z-last among them

    done, _ = _execloop("run", str(script), "--timeout", "300", "--json")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) < 100_000
    outcome = json.loads(done.stdout)
    assert len(outcome["artifacts"]) == 200
    assert outcome["artifacts_total_files"] == 100_002  # and main.py
    assert outcome["artifacts_total_bytes"] == 2000 + len(script.read_text())


def _on_a_terminal(*args: str) -> bytes:
    """Run the CLI with stdout and stderr on a pseudo-terminal; everything it wrote."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [*_CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=600)
    os.close(leader)
    return b"".join(chunks)


def test_escape_sequences_are_neutralised_on_a_terminal_and_exact_in_json(
    tmp_path: Path,
) -> None:
    script = tmp_path / "escapes.py"
    script.write_text(ESCAPES)
    shown = _on_a_terminal("run", str(script))
    for sequence in (b"\x1b]0;pwned", b"\x1b[2J", "\x9b".encode(), b"\rE"):
        assert sequence not in shown, shown
    assert b"A\\x1b]0;pwned\\x07B\\x1b[2JC\\x9bD\\x0dE" in shown, shown

    done, _ = _execloop("run", str(script), "--json")
    assert json.loads(done.stdout)["result"]["stdout"] == "A\x1b]0;pwned\x07B\x1b[2JC\x9bD\rE\tF\n"
