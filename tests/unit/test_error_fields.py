"""Errors carry fields and results carry a kind, so callers branch on data: the Docker SDK's
errors are mapped in one place (``_docker_call``) to typed errors with the status code, and
every exception a task can end with maps to one ``ErrorKind``."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from execloop.errors import (
    BackendUnavailableError,
    BrokerBusyError,
    ConfigError,
    ExecloopError,
    ImageError,
    ModelError,
    SandboxClosedError,
    SandboxError,
    SandboxGoneError,
    SkillError,
    TransferError,
)
from execloop.runtime.task import ErrorKind, Result, TaskStatus
from execloop.sandboxes.docker_backend import _docker_call, removed_already

pytestmark = pytest.mark.anyio


def _api_error(cls: type[docker.errors.APIError], status: int, text: str) -> Exception:
    response = requests.Response()
    response.status_code = status
    return cls(text, response=response, explanation=text)


@pytest.mark.parametrize(
    ("raised", "expected", "status", "gone"),
    [
        (
            _api_error(docker.errors.NotFound, 404, "No such container: abc"),
            SandboxGoneError,
            404,
            True,
        ),
        (
            _api_error(
                docker.errors.APIError, 409, "removal of container abc is already in progress"
            ),
            SandboxError,
            409,
            True,
        ),
        (_api_error(docker.errors.APIError, 500, "driver failed"), SandboxError, 500, False),
    ],
)
async def test_docker_errors_become_typed_errors_with_their_status(
    raised: Exception, expected: type[SandboxError], status: int, gone: bool
) -> None:
    def call() -> None:
        raise raised

    with pytest.raises(expected) as caught:
        await _docker_call(call)
    assert type(caught.value) is expected and caught.value.status_code == status
    assert caught.value.__cause__ is raised
    assert removed_already(caught.value) is gone


async def test_a_missing_image_and_a_silent_daemon_keep_their_own_types() -> None:
    def no_image() -> None:
        raise _api_error(docker.errors.ImageNotFound, 404, "No such image: x")

    def no_daemon() -> None:
        raise docker.errors.DockerException("Error while fetching server API version")

    with pytest.raises(ImageError):
        await _docker_call(no_image)
    with pytest.raises(BackendUnavailableError):
        await _docker_call(no_daemon)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConfigError("bad"), ErrorKind.INVALID_TASK),
        (SkillError("unknown skill"), ErrorKind.INVALID_TASK),
        (ModelError("HTTP 529", status_code=529), ErrorKind.MODEL),
        (SandboxClosedError("ended", ended="timed out"), ErrorKind.SANDBOX),
        (TransferError("missing", path="x"), ErrorKind.SANDBOX),
        (BackendUnavailableError("no daemon"), ErrorKind.SANDBOX),
        (ImageError("no image"), ErrorKind.SANDBOX),
        (BrokerBusyError("busy", pending=1, max_pending=1), ErrorKind.INTERNAL),
        (ExecloopError("other"), ErrorKind.INTERNAL),
        (KeyError("bug"), ErrorKind.INTERNAL),
    ],
)
def test_every_exception_has_one_error_kind(exc: BaseException, kind: ErrorKind) -> None:
    assert ErrorKind.of(exc) is kind


def test_an_error_result_needs_its_kind_and_a_kind_needs_its_text() -> None:
    with pytest.raises(ValueError, match="needs its error_kind"):
        Result(task_id="t", status=TaskStatus.ERROR, error="boom")
    with pytest.raises(ValueError, match="needs its error_kind"):
        Result(task_id="t", status=TaskStatus.BUDGET_EXHAUSTED, error="token budget exhausted")
    with pytest.raises(ValueError, match="needs the error's text"):
        Result(task_id="t", status=TaskStatus.ERROR, error_kind=ErrorKind.MODEL)
    ok = Result(task_id="t", status=TaskStatus.ERROR, error="x", error_kind=ErrorKind.SANDBOX)
    assert ok.model_dump(mode="json")["error_kind"] == "sandbox"
    assert [kind.value for kind in ErrorKind] == [
        "invalid_task",
        "model",
        "sandbox",
        "budget",
        "cancelled",
        "internal",
    ]
