"""The code-execute-verify loop end to end: the real anthropic/openai clients against loopback
servers speaking the providers' JSON, scripts run in real Docker sandboxes, checks run by the
runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from execloop.runtime.checks import ExitStatusCheck, ExpressionCheck, PytestCheck
from execloop.runtime.loop import SubAgent
from execloop.runtime.models import AnthropicModel, OpenAIModel
from execloop.runtime.prompts import CORRECTION
from execloop.runtime.task import Budget, Result, Task, TaskStatus
from execloop.runtime.tokens import count_tokens
from tests.fakes import FakeAnthropicServer, FakeOpenAIServer

pytestmark = pytest.mark.anyio

TOTAL_IS_10 = ExpressionCheck(expr='result["total"] == 10')
USAGE = {"input_tokens": 900, "output_tokens": 120, "cache_read_input_tokens": 700}


def _writes_total(total: int) -> str:
    return f"import json\njson.dump({{'total': {total}}}, open('result.json', 'w'))\n"


def _model(server: FakeAnthropicServer) -> AnthropicModel:
    return AnthropicModel(
        model="claude-test",
        api_key="test-key",
        base_url=server.base_url,
        max_retries=2,
        timeout=30,
    )


async def _solve(task: Task, model: AnthropicModel | OpenAIModel) -> Result:
    """Run the loop, then close the model's HTTP client inside this event loop."""
    async with model:
        return await SubAgent(task, model=model).run()


def _task(**fields: Any) -> Task:
    fields.setdefault("checks", (ExitStatusCheck(), TOTAL_IS_10))
    return Task(goal="Write result.json with total 10.", **fields)


def _prompt_text(request: Any) -> str:
    body = request.body
    system = "".join(block["text"] for block in body["system"])
    return system + "".join(message["content"] for message in body["messages"])


async def test_fails_a_check_then_passes_on_the_second_attempt() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(script=_writes_total(9), usage=USAGE)
        server.push_reply(script=_writes_total(10), usage=USAGE)
        result = await _solve(_task(), _model(server))
        second_prompt = _prompt_text(server.requests[1])
    assert result.status is TaskStatus.PASSED
    assert result.attempts == 2
    assert [r.checks_passed for r in result.attempt_log] == [1, 2]
    assert "FAILED" in second_prompt and 'result["total"] == 10' in second_prompt
    assert "json.dump({'total': 9}" in second_prompt  # the last script is quoted back
    assert result.usage.input_tokens == 1800 and result.usage.cache_read_input_tokens == 1400
    assert result.usage.requests == 2
    assert json.loads(result.answer) == {"total": 10}
    assert {a.path for a in result.artifacts} >= {"result.json", "main.py"}
    assert all(c.passed for c in result.checks) and not result.scripted


async def test_a_reply_without_a_script_gets_a_one_line_correction() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(text="Let me think about the best approach first.")
        server.push_reply(text="Here it is:\n```python\n" + _writes_total(10) + "```")
        result = await _solve(_task(), _model(server))
        second_prompt = _prompt_text(server.requests[1])
    assert result.status is TaskStatus.PASSED
    assert result.attempt_log[0].exit_reason is None
    assert CORRECTION in second_prompt


async def test_rate_limit_then_success_is_retried_by_the_client() -> None:
    with FakeAnthropicServer() as server:
        server.push_error(429, "rate_limit_error", retry_after=0.001)
        server.push_error(529, "overloaded_error", retry_after=0.001)
        server.push_reply(script=_writes_total(10))
        result = await _solve(_task(), _model(server))
        requests = len(server.requests)
    assert result.status is TaskStatus.PASSED
    assert requests == 3
    assert result.attempts == 1


async def test_provider_outage_is_an_error_result_not_an_exception() -> None:
    with FakeAnthropicServer() as server:
        for _ in range(3):
            server.push_error(500, "api_error", retry_after=0.001)
        result = await _solve(_task(), _model(server))
    assert result.status is TaskStatus.ERROR
    assert result.error is not None and "ModelError" in result.error and "500" in result.error


async def test_token_budget_exhaustion_is_reported() -> None:
    with FakeAnthropicServer() as server:
        for total in (1, 2, 3):
            server.push_reply(script=_writes_total(total), usage={"input_tokens": 3000})
        task = _task(budget=Budget(max_attempts=10, max_tokens=5000))
        result = await _solve(task, _model(server))
    assert result.status is TaskStatus.BUDGET_EXHAUSTED
    assert result.attempts == 2
    assert result.error == "token budget exhausted"


async def test_attempts_running_out_is_failed_with_the_last_checks() -> None:
    with FakeAnthropicServer() as server:
        for total in (1, 2):
            server.push_reply(script=_writes_total(total))
        result = await _solve(_task(budget=Budget(max_attempts=2)), _model(server))
    assert result.status is TaskStatus.FAILED
    assert [c.passed for c in result.checks] == [True, False]


async def test_an_agent_that_deletes_or_edits_its_checks_still_fails(tmp_path: Path) -> None:
    checks_root = tmp_path / "checks"
    checks_root.mkdir()
    (checks_root / "test_total.py").write_text(
        "import json\n\ndef test_total():\n"
        "    assert json.load(open('result.json'))['total'] == 10\n"
    )
    cheat = (
        _writes_total(3)
        + "import os, glob, threading, time\n"
        # replace any check file it can find, now and later, and leave a fake test behind
        + "fake = 'def test_total():\\n    assert True\\n'\n"
        + "open('test_total.py', 'w').write(fake)\n"
        + "def keep_cheating():\n"
        + "    while True:\n"
        + "        for path in glob.glob('**/test_total.py', recursive=True):\n"
        + "            open(path, 'w').write(fake)\n"
        + "        time.sleep(0.001)\n"
        + "threading.Thread(target=keep_cheating, daemon=True).start()\n"
    )
    with FakeAnthropicServer() as server:
        server.push_reply(script=cheat)
        task = _task(
            checks=(PytestCheck(file=str(checks_root / "test_total.py")),),
            budget=Budget(max_attempts=1),
        )
        result = await _solve(task, _model(server))
    assert result.status is TaskStatus.FAILED
    (pytest_check,) = [c for c in result.checks if c.kind == "pytest"]
    assert not pytest_check.passed


async def test_prompt_of_attempt_20_is_bounded() -> None:
    with FakeAnthropicServer() as server:
        for total in range(20):
            server.push_reply(script=_writes_total(100 + total))
        task = _task(budget=Budget(max_attempts=20))
        result = await _solve(task, _model(server))
        prompts = [count_tokens(_prompt_text(request)) for request in server.requests]
    assert result.status is TaskStatus.FAILED and result.attempts == 20
    assert prompts[19] <= 1.25 * prompts[2], prompts
    assert [r.prompt_tokens for r in result.attempt_log][19] <= 1.25 * result.attempt_log[
        2
    ].prompt_tokens


async def test_openai_compatible_endpoint_drives_the_loop() -> None:
    with FakeOpenAIServer() as server:
        server.push_reply(script=_writes_total(10))
        model = OpenAIModel(model="qwen2.5-coder", base_url=server.base_url, max_retries=1)
        result = await _solve(_task(), model)
        body = server.requests[0].body
    assert result.status is TaskStatus.PASSED
    assert body["tools"][0]["function"]["name"] == "submit_script"
    assert result.model == "openai:qwen2.5-coder"
