"""`execloop run` and `execloop doctor` end to end on the real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _execloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_run_prints_a_json_result_with_artifacts(tmp_path: Path) -> None:
    data = tmp_path / "numbers.txt"
    data.write_text("1\n2\n3\n")
    script = tmp_path / "job.py"
    script.write_text(
        "import json, sys\n"
        "total = sum(int(x) for x in open('numbers.txt'))\n"
        "json.dump({'total': total, 'args': sys.argv[1:]}, open('result.json', 'w'))\n"
        "print('total', total)\n"
    )
    done = _execloop(
        "run", str(script), "--input", str(data), "--memory", "256m", "--json", "--", "--flag"
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["result"]["exit_reason"] == "ok"
    assert outcome["result"]["stdout"] == "total 6\n"
    paths = {item["path"] for item in outcome["artifacts"]}
    assert paths == {"main.py", "numbers.txt", "result.json"}


def test_run_exit_status_follows_the_exit_reason(tmp_path: Path) -> None:
    script = tmp_path / "spin.py"
    script.write_text("while True:\n    pass\n")
    done = _execloop("run", str(script), "--timeout", "1")
    assert done.returncode == 124
    assert "timeout" in done.stderr


def test_run_with_a_host_workspace_keeps_outputs(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.chown(workspace, 1000, 1000)
    script = tmp_path / "write.py"
    script.write_text("open('out.txt', 'w').write('kept')\n")
    done = _execloop("run", str(script), "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    assert (workspace / "out.txt").read_text() == "kept"


def test_doctor_reports_daemon_and_images_ok() -> None:
    done = _execloop("doctor", "--json")
    findings = {item["name"]: item for item in json.loads(done.stdout)}
    assert findings["docker daemon"]["ok"], findings["docker daemon"]
    assert findings["sandbox images"]["ok"], findings["sandbox images"]
    assert findings["docker seccomp"]["ok"]
    assert done.returncode == 0


def test_task_command_loops_until_the_check_passes_and_says_scripted(tmp_path: Path) -> None:
    replies = tmp_path / "replies.yaml"
    replies.write_text(
        "- \"import json\\njson.dump({'total': 3}, open('result.json', 'w'))\\n\"\n"
        "- script: \"import json\\njson.dump({'total': 6}, open('result.json', 'w'))\\n\"\n"
    )
    data = tmp_path / "numbers.txt"
    data.write_text("1\n2\n3\n")
    done = _execloop(
        "task",
        "Sum numbers.txt into result.json as total",
        "--input",
        str(data),
        "--model",
        f"scripted:{replies}",
        "--check",
        'result["total"] == 6',
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "passed" and result["attempts"] == 2
    assert result["scripted"] is True
    assert "SCRIPTED MODEL" in done.stderr
    assert [c["name"] for c in result["checks"]] == ["exit status", 'result["total"] == 6']


def test_demo_runs_every_skill_through_the_broker(tmp_path: Path) -> None:
    done = _execloop("demo", "--out", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    assert "SCRIPTED MODEL" in done.stderr
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    assert done.stdout.count("passed") >= 9  # five tool tasks and four skills' examples
    assert "SCRIPTED MODEL: 9 tasks: 5 call a shop's host tools" in done.stderr


def _waiting_script(tmp_path: Path, before: str, after: str) -> tuple[Path, Path]:
    """A host workspace the sandbox can write, and a script that runs ``before``, waits until
    the test creates ``go`` in the workspace, then runs ``after``."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.chown(workspace, 1000, 1000)
    script = tmp_path / "wait.py"
    wait = "while not os.path.exists('go'):\n    time.sleep(0.01)"
    script.write_text(f"import os, time\n{before}\n{wait}\n{after}\n")
    return workspace, script


def test_run_shows_output_while_the_script_runs(tmp_path: Path) -> None:
    """The first line arrives before the script ends: the script waits for a file the test
    creates only after reading that line (no timing), and nothing is printed twice."""
    workspace, script = _waiting_script(tmp_path, "print('a', flush=True)", "print('b')")
    command = [sys.executable, "-m", "execloop.runtime.cli", "run", str(script)]
    with subprocess.Popen(
        [*command, "--workspace", str(workspace), "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        (workspace / "go").touch()
        rest, errors = process.communicate(timeout=300)
    assert first == "a\n", errors
    assert process.returncode == 0, errors
    assert rest == "b\n"  # the summary (on stderr) does not print the output again
    assert "ok wait.py" in errors


def test_run_puts_the_label_flags_on_the_container(tmp_path: Path) -> None:
    """While the script waits for a go-ahead file, the container is found by the user's label."""
    import docker

    workspace, script = _waiting_script(tmp_path, "", "print('went')")
    mark = f"test-{os.getpid()}-{time.monotonic_ns()}"
    argv = [sys.executable, "-m", "execloop.runtime.cli", "run", str(script), "--timeout", "60"]
    argv += ["--workspace", str(workspace), "--label", f"com.example.mark={mark}"]
    argv += ["--label", "team=ml"]
    client = docker.from_env()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as cli:
        try:
            found: list[Any] = []
            deadline = time.monotonic() + 60
            while not found and time.monotonic() < deadline and cli.poll() is None:
                found = client.containers.list(filters={"label": f"com.example.mark={mark}"})
                time.sleep(0.1)
            (workspace / "go").write_text("")
            out, err = cli.communicate(timeout=120)
        finally:
            if cli.poll() is None:
                cli.kill()
    assert len(found) == 1, err
    assert found[0].labels["team"] == "ml"
    assert found[0].labels["org.execloop.managed"] == "1"
    assert cli.returncode == 0, err
    assert "went" in out
    assert client.containers.list(all=True, filters={"label": f"com.example.mark={mark}"}) == []
