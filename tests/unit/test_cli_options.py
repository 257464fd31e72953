"""`execloop run`/`task`: --backend, --placement, limits, --param, --db, --out, execloop.toml.

The restricted backend runs in-process (no Docker), so these stay unit tests; the backend
choice itself is what several of them check."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from execloop.sandboxes import BACKENDS

REPO = Path(__file__).resolve().parents[2]
CUSTOMERS = REPO / "skills" / "data-clean" / "examples" / "customers"


def _execloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done
    return lines[0]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text('open("out.txt", "w").write("made")\nprint("hello from the sandbox")\n')
    return path


def test_backend_choices_are_the_registry(tmp_path: Path, script: Path) -> None:
    done = _execloop("run", str(script), "--backend", "nowhere", cwd=tmp_path)
    line = _one_error_line(done)
    assert "--backend" in line and all(name in line for name in BACKENDS)
    done = _execloop("run", str(script), "--placement", "moon", cwd=tmp_path)
    assert "--placement" in _one_error_line(done)


def test_run_prints_the_output_and_out_keeps_the_workspace(tmp_path: Path, script: Path) -> None:
    out = tmp_path / "kept"
    done = _execloop("run", str(script), "--backend", "restricted", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "hello from the sandbox" in done.stdout
    assert (out / "out.txt").read_text() == "made"
    assert (out / "main.py").read_text() == script.read_text()  # the script comes back too


def test_out_refuses_a_non_empty_directory_before_running(tmp_path: Path, script: Path) -> None:
    out = tmp_path / "kept"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    for command in (
        ["run", str(script), "--backend", "restricted"],
        ["task", "goal", "--model", f"scripted:{tmp_path / 'absent.yaml'}"],
    ):
        line = _one_error_line(_execloop(*command, "--out", str(out), cwd=tmp_path))
        assert "--out" in line and "not empty" in line
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    (tmp_path / "file").write_text("")
    line = _one_error_line(_execloop("run", str(script), "--out", "file", cwd=tmp_path))
    assert "not a directory" in line


def test_limits_are_flags_of_task_too(tmp_path: Path) -> None:
    done = _execloop("task", "goal", "--model", "scripted:x.yaml", "--pids", "3", cwd=tmp_path)
    line = _one_error_line(done)
    assert line.startswith("error: --pids: must be at least 16")


def test_label_flags_are_checked_before_anything_runs(tmp_path: Path, script: Path) -> None:
    for command in (["run", str(script)], ["task", "goal", "--model", "scripted:x.yaml"]):
        line = _one_error_line(_execloop(*command, "--label", "no-equals", cwd=tmp_path))
        assert "--label" in line and "KEY=VALUE" in line
        line = _one_error_line(
            _execloop(*command, "--label", "org.execloop.owner=me", cwd=tmp_path)
        )
        assert "--label" in line and "reserved namespace org.execloop." in line


def _replies(tmp_path: Path) -> Path:
    path = tmp_path / "replies.yaml"
    script = 'import json\njson.dump({"rows": 3}, open("result.json", "w"))\n'
    path.write_text(yaml.safe_dump([{"script": script}]))
    return path


def test_task_with_db_and_out(tmp_path: Path) -> None:
    replies = _replies(tmp_path)
    done = _execloop(
        "task",
        "Write rows",
        "--check",
        'result["rows"] == 3',
        "--model",
        f"scripted:{replies}",
        "--backend",
        "restricted",
        "--db",
        "runs.db",
        "--out",
        "kept",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "passed" and result["scripted"] is True
    assert json.loads((tmp_path / "kept" / "result.json").read_text()) == {"rows": 3}
    assert "json.dump" in (tmp_path / "kept" / "main.py").read_text()
    with sqlite3.connect(tmp_path / "runs.db") as db:  # the broker's store holds the task
        assert db.execute("select id from tasks").fetchall() == [(result["task_id"],)]
    runs = _execloop("runs", "--db", "runs.db", "--json", cwd=tmp_path)
    assert runs.returncode == 0
    assert [(r["tasks"], r["passed"]) for r in json.loads(runs.stdout)] == [(1, 1)]


def test_param_is_checked_against_the_skill_inputs_before_attempt_1(tmp_path: Path) -> None:
    replies = _replies(tmp_path)
    common = ["--model", f"scripted:{replies}", "--backend", "restricted"]
    common += ["--input", str(CUSTOMERS / "customers.csv")]
    done = _execloop(
        "task", "Clean", "--skill", "data-clean", "--param", "data=customers.txt", *common,
        cwd=tmp_path,
    )  # fmt: skip
    line = _one_error_line(done)
    assert line.startswith("error: --param:") and "data" in line and "schema" in line
    assert "attempt" not in done.stdout
    done = _execloop("task", "Clean", "--param", "data", "--skill", "data-clean", *common,
                     cwd=tmp_path)  # fmt: skip
    assert "is not KEY=VALUE" in _one_error_line(done)
    done = _execloop("task", "Clean", "--param", "data=a.csv", *common, cwd=tmp_path)
    assert "--skill" in _one_error_line(done)


def test_param_overlays_an_input_task_json(tmp_path: Path) -> None:
    """The task.json the sandbox gets is the given one with the params over it."""
    replies = tmp_path / "replies.yaml"
    copy = "import json\njson.dump(json.load(open('task.json')), open('result.json', 'w'))\n"
    replies.write_text(yaml.safe_dump([{"script": copy}]))
    (tmp_path / "task.json").write_text(json.dumps({"data": "a.csv", "schema": "s.json"}))
    done = _execloop(
        "task", "Echo", "--skill", "data-clean", "--input", "task.json",
        "--param", 'key=["customer_id"]', "--param", "data=b.csv",
        "--model", f"scripted:{replies}", "--backend", "restricted", "--max-attempts", "1",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    answer = json.loads(json.loads(done.stdout)["answer"])
    assert answer == {"data": "b.csv", "schema": "s.json", "key": ["customer_id"]}


def test_the_sample_replies_file_is_the_example_solution() -> None:
    replies = yaml.safe_load((CUSTOMERS / "replies.yaml").read_text())
    assert len(replies) == 2 and replies[0]["script"] != replies[1]["script"]
    assert replies[1]["script"] == (CUSTOMERS / "solution.py").read_text()


def test_on_exec_sees_the_output_before_the_workspace_is_listed_and_copied(
    tmp_path: Path,
) -> None:
    from execloop import ExecResult, run_script

    out = tmp_path / "out"
    seen: list[tuple[str, bool]] = []

    def on_exec(result: ExecResult) -> None:
        seen.append((result.stdout, out.exists()))

    done = run_script("print('hi')", spec={"backend": "restricted"}, on_exec=on_exec, out_dir=out)
    assert seen == [("hi\n", False)] and done.result.stdout == "hi\n"
    assert (out / "main.py").read_text() == "print('hi')"


def test_label_flags_add_to_the_config_files_labels() -> None:
    from execloop.runtime.cli_sandbox import sandbox_spec, spec_fields

    base = {"labels": {"com.example.team": "ml", "stage": "dev"}}
    spec = sandbox_spec(base, **spec_fields({"labels": ("stage=prod", "run=7")}))
    assert spec.labels == {"com.example.team": "ml", "stage": "prod", "run": "7"}
    assert sandbox_spec(base, **spec_fields({"labels": ()})).labels == base["labels"]
