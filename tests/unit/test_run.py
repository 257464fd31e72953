"""run_script's own argument checks: clear ConfigErrors before any sandbox starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from execloop import ConfigError, run_script
from execloop.sandboxes import create_sandbox


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spec": {"memory": "lots", "timeout_s": -1}}, r"memory: .*; timeout_s: "),
        ({"spec": {"backend": "podman"}}, "backend: Input should be"),
        ({"spec": {"bogus": 1}}, "bogus: Extra inputs are not permitted"),
        ({"spec": "docker"}, "SandboxSpec or a dict of its fields, not str"),
        ({"files": ["a.txt"]}, "mapping, not list"),
    ],
)
def test_bad_arguments_are_one_line_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        run_script("print(1)", **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_a_dict_spec_is_validated_into_a_sandbox_spec() -> None:
    sandbox = create_sandbox({"backend": "restricted", "memory": "256m"})
    assert (sandbox.spec.backend, sandbox.spec.memory) == ("restricted", 256 * 1024**2)


def test_scripts_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="fifo is a fifo; give a Python file to run"):
        run_script(tmp_path / "fifo")
    with pytest.raises(ConfigError, match="is a character device"):
        run_script(Path("/dev/zero"))
    with pytest.raises(ConfigError, match="cannot read the script"):
        run_script(tmp_path / "missing.py")
    with pytest.raises(ConfigError, match="code \\(str or bytes\\)"):
        run_script(42)  # type: ignore[arg-type]
