"""What every framework executor shares: the exit status a framework gets for an
``ExecResult``, the bounded text its model sees, and the import error naming the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from execloop.errors import ConfigError
from execloop.runtime.executors.session import exit_code, render
from execloop.sandboxes import ExecResult, ExitReason


def _result(reason: ExitReason, code: int | None, **fields: object) -> ExecResult:
    return ExecResult(exit_code=code, exit_reason=reason, duration_s=0.1, **fields)


@pytest.mark.parametrize(
    ("reason", "code", "status"),
    [
        (ExitReason.OK, 0, 0),
        (ExitReason.ERROR, 1, 1),
        (ExitReason.ERROR, 3, 3),  # the script's own status is kept
        (ExitReason.ERROR, None, 1),
        (ExitReason.TIMEOUT, None, 124),
        (ExitReason.OOM, None, 137),
        (ExitReason.KILLED, None, 137),
        (ExitReason.OUTPUT_LIMIT, None, 1),
        (ExitReason.KILLED, 0, 137),  # never 0 for a failure
    ],
)
def test_exit_status(reason: ExitReason, code: int | None, status: int) -> None:
    assert exit_code(_result(reason, code)) == status


def test_success_shows_output_and_warnings() -> None:
    result = _result(ExitReason.OK, 0, stdout="42\n", stderr="DeprecationWarning: x\n")
    assert render(result) == "42\n\nDeprecationWarning: x\n"


def test_failure_says_why_first() -> None:
    result = _result(ExitReason.TIMEOUT, None, stdout="started\n", stderr="killed after 1 s")
    assert render(result, note="[note]") == (
        "[note]\n[execloop: timeout, exit status 124]\nstarted\nkilled after 1 s"
    )


def test_text_is_bounded_and_the_cut_marked() -> None:
    result = _result(ExitReason.OK, 0, stdout="a" * 5000 + "END")
    text = render(result, limit=1000)
    assert len(text) <= 1000
    assert "characters omitted" in text
    assert text.endswith("END")


# module -> (the framework package blocked, the extra that installs it)
EXTRAS = {
    "autogen": ("autogen_core", "autogen"),
    "smolagents": ("smolagents", "smolagents"),
    "langgraph": ("langchain_core", "langgraph"),
    "openai_agents": ("agents", "openai-agents"),
}

_BLOCKED_IMPORT = """
import sys


class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {package!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)


sys.meta_path.insert(0, Absent())
from execloop.errors import MissingExtraError

try:
    import execloop.runtime.executors.{module}
except MissingExtraError as exc:
    print(exc.extra, exc.name, isinstance(exc, ImportError))
    print(exc)
"""


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_missing_framework_names_the_extra(module: str) -> None:
    package, extra = EXTRAS[module]
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT.format(package=package, module=module)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    fields, message = done.stdout.splitlines()
    assert fields.split() == [extra, package, "True"]
    assert f"pip install 'execloop[{extra}]'" in message


@pytest.mark.parametrize("bad", [0, 199, -1, True, 2.5, "20000"])
def test_every_executor_refuses_an_unusable_output_bound(bad: object) -> None:
    from execloop.runtime.executors.autogen import ExecloopCodeExecutor
    from execloop.runtime.executors.langgraph import ThreadSandboxes
    from execloop.runtime.executors.openai_agents import SandboxContext
    from execloop.runtime.executors.smolagents import ExecloopExecutor

    for make in (ExecloopCodeExecutor, ThreadSandboxes, SandboxContext, ExecloopExecutor):
        with pytest.raises(ConfigError, match="max_output_chars"):
            make(max_output_chars=bad)  # type: ignore[operator]


@pytest.mark.parametrize("bad", [0, -3, True, "4"])
def test_thread_bound_is_checked(bad: object) -> None:
    from execloop.runtime.executors.langgraph import ThreadSandboxes

    with pytest.raises(ConfigError, match="max_threads"):
        ThreadSandboxes(max_threads=bad)  # type: ignore[arg-type]


def test_a_bad_spec_names_the_field() -> None:
    from execloop.runtime.executors.langgraph import ThreadSandboxes

    with pytest.raises(ConfigError, match="memroy"):
        ThreadSandboxes(spec={"backend": "local", "memroy": "1g"})
