"""execloop.toml: parsed with pydantic (unknown keys named with the file), paths relative to
the file, flags over the file over the defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from execloop.errors import ConfigFileError
from execloop.runtime.cli import cli
from execloop.runtime.cli_sandbox import sandbox_spec
from execloop.runtime.config import Config, load_config


def _write(folder: Path, text: str) -> Path:
    path = folder / "execloop.toml"
    path.write_text(text)
    return path


def test_no_file_is_the_empty_config(tmp_path: Path) -> None:
    assert load_config(cwd=tmp_path) == Config()


def test_a_full_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'model = "scripted:r.yaml"\ndb = "runs/runs.db"\nskill_dirs = ["mine"]\n'
        '[sandbox]\nbackend = "local"\nmemory = "512m"\ntimeout_s = 30\n'
        '[[tools.mcp]]\ncommand = ["python", "server.py"]\nprefix = "cat_"\ncwd = "srv"\n'
        '[[tools.mcp]]\nurl = "http://127.0.0.1:8000/mcp"\n',
    )
    config = load_config(cwd=tmp_path)
    assert config.path == path and config.model == "scripted:r.yaml"
    assert config.db == tmp_path / "runs" / "runs.db"
    assert config.skill_dirs == (tmp_path / "mine",)
    assert [s.command for s in config.tools.mcp] == [("python", "server.py"), None]
    assert config.tools.mcp[0].cwd == tmp_path / "srv"
    spec = config.sandbox_spec()
    assert (spec.backend, spec.memory, spec.timeout_s) == ("local", 512 * 2**20, 30)
    assert config.sandbox_spec(timeout_s=5).timeout_s == 5  # keyword arguments win
    flagged = sandbox_spec(config.sandbox_fields(), memory="64m", cpus=None)
    assert (flagged.memory, flagged.backend, flagged.cpus) == (64 * 2**20, "local", 1.0)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("modle = 'x'\n", "modle"),
        ("[sandbox]\nmemroy = '1g'\n", "sandbox.memroy"),
        ("[sandbox]\nmemory = 'lots'\n", "sandbox.memory"),
        ("[[tools.mcp]]\ncommand = ['a']\nurl = 'http://x'\n", "tools.mcp.0"),
        ("[tools]\nmcp_servers = []\n", "tools.mcp_servers"),
        ("path = '/etc'\n", "path"),
    ],
)
def test_a_bad_key_is_named_with_the_file(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert caught.value.key == key and caught.value.path == path
    assert str(caught.value).startswith(f"{path}: {key}:")


def test_workspace_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    path = _write(tmp_path, '[sandbox]\nworkspace_dir = "ws"\n')
    assert load_config(path).sandbox_spec().workspace_dir == tmp_path / "ws"


def test_unreadable_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_config(tmp_path / "absent.toml")
    assert caught.value.key is None
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(_write(tmp_path, "model = \n"))


def _execloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execloop.runtime.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )


def test_the_cli_reads_the_working_directory_file_and_flags_win(tmp_path: Path) -> None:
    # restricted refuses `import subprocess`: the file's backend is the one used
    _write(tmp_path, '[sandbox]\nbackend = "restricted"\ntimeout_s = 20\n')
    (tmp_path / "job.py").write_text("import subprocess\n")
    done = _execloop("run", "job.py", cwd=tmp_path)
    assert done.returncode == 1 and "subprocess" in done.stdout + done.stderr
    done = _execloop("run", "job.py", "--timeout", "0", cwd=tmp_path)
    assert done.returncode == 2 and "--timeout: must be greater than 0" in done.stderr


def test_the_cli_names_a_bad_key_in_one_line(tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[sandbox]\nbackend = 'docker'\nlimits = 3\n")
    done = _execloop("--config", str(other), "run", "job.py", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {other}: sandbox.limits: unknown key"
    done = _execloop("--config", str(tmp_path / "nope.toml"), "doctor", cwd=tmp_path)
    assert done.returncode == 2 and "nope.toml" in done.stderr


def test_mcp_refuses_a_non_isolating_backend_from_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[sandbox]\nbackend = "restricted"\n')
    done = _execloop("mcp", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}: sandbox.backend: the MCP server offers only docker" in done.stderr


def test_task_takes_model_backend_and_db_from_the_file(tmp_path: Path) -> None:
    script = 'import json\njson.dump({"rows": 3}, open("result.json", "w"))\n'
    (tmp_path / "replies.yaml").write_text(f"- script: {json.dumps(script)}\n")
    _write(
        tmp_path,
        'model = "scripted:replies.yaml"\ndb = "state/runs.db"\n'
        '[sandbox]\nbackend = "restricted"\n',
    )
    (tmp_path / "state").mkdir()
    done = _execloop("task", "Write rows", "--check", 'result["rows"] == 3', "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "passed" and result["model"] == "scripted:replies"
    assert (tmp_path / "state" / "runs.db").is_file()
    done = _execloop("task", "Write rows", "--model", "nonsense", cwd=tmp_path)  # flag wins
    assert done.returncode == 2 and "--model: bad model spec 'nonsense'" in done.stderr


def test_skills_list_and_show_search_the_files_skill_dirs(tmp_path: Path) -> None:
    skill = tmp_path / "mine" / "tally"
    skill.mkdir(parents=True)
    front = "name: tally\ndescription: Counts rows.\nversion: 0.2.0\ninputs: {type: object}\n"
    (skill / "SKILL.md").write_text(f"---\n{front}---\n# Tally\n\nCount the rows.\n")
    config = _write(tmp_path, 'skill_dirs = ["mine"]\n')
    runner = CliRunner()
    listed = runner.invoke(cli, ["--config", str(config), "skills", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert "tally" in [item["name"] for item in json.loads(listed.output)]
    shown = runner.invoke(cli, ["--config", str(config), "skills", "show", "tally"])
    assert shown.exit_code == 0 and shown.output.startswith("tally 0.2.0\n"), shown.output
    missing = _write(tmp_path, 'skill_dirs = ["gone"]\n')
    with pytest.raises(ConfigFileError, match=r"execloop.toml: skill_dirs: .*gone is not a folder"):
        load_config(missing).skill_folders()
    refused = runner.invoke(cli, ["--config", str(missing), "skills", "list"])
    assert refused.exit_code == 2
    assert (
        refused.stderr
        == f"error: {missing}: skill_dirs: {tmp_path / 'gone'} is not a folder of skills\n"
    )
