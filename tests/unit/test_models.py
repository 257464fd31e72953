"""Model adapters driven through the real ``anthropic``/``openai`` clients against loopback
servers that speak the providers' JSON (tests/fakes), plus ScriptedModel and parse_model."""

from __future__ import annotations

import importlib
import json
import socket
import time
from pathlib import Path

import anthropic
import anyio
import anyio.lowlevel
import openai
import pytest

from execloop.errors import ConfigError, ModelError
from execloop.runtime.ledger import Usage
from execloop.runtime.models import (
    MODEL_SPEC_FORMS,
    SUBMIT_SCRIPT_TOOL,
    AnthropicModel,
    Message,
    ModelRequest,
    OpenAIModel,
    ScriptedModel,
    parse_model,
)
from execloop.runtime.tokens import count_tokens
from tests.fakes import FakeAnthropicServer, FakeOpenAIServer

pytestmark = pytest.mark.anyio

REQUEST = ModelRequest(
    system=("You are a sub-agent.", "Skill: count lines."),
    messages=(Message(role="user", content="Count the lines of data.txt."),),
)
FAST = 0.001  # retry-after in seconds: the SDKs wait exactly this long


def anthropic_model(server: FakeAnthropicServer, **kwargs: object) -> AnthropicModel:
    options: dict[str, object] = {"max_retries": 2, "timeout": 5.0, **kwargs}
    return AnthropicModel(
        model="claude-test",
        api_key="sk-test-key",
        base_url=server.base_url,
        **options,  # type: ignore[arg-type]
    )


def openai_model(server: FakeOpenAIServer, **kwargs: object) -> OpenAIModel:
    options: dict[str, object] = {"max_retries": 2, "timeout": 5.0, **kwargs}
    return OpenAIModel(model="qwen-test", base_url=server.base_url, **options)  # type: ignore[arg-type]


def credential(headers: dict[str, str]) -> str:
    # anthropic 2.x sends the key as a Bearer token; older SDKs used x-api-key.
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


# -- Anthropic ------------------------------------------------------------------------------


async def test_anthropic_tool_call_gives_script_text_and_usage() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(
            script="print(1)",
            text="Here it is.",
            usage={
                "input_tokens": 12,
                "output_tokens": 34,
                "cache_read_input_tokens": 1500,
                "cache_creation_input_tokens": 200,
            },
        )
        async with anthropic_model(server) as model:
            reply = await model.complete(REQUEST)
        sent = server.requests[0]
    assert reply.script == "print(1)"
    assert reply.text == "Here it is."
    assert reply.usage == Usage(
        input_tokens=12,
        output_tokens=34,
        cache_read_input_tokens=1500,
        cache_creation_input_tokens=200,
        requests=1,
    )
    assert (reply.model, reply.stop_reason, reply.scripted, reply.attempts) == (
        "claude-test",
        "tool_use",
        False,
        1,
    )
    assert model.name == "anthropic:claude-test" and not model.scripted
    assert sent.path == "/v1/messages"
    assert credential(sent.headers) == "sk-test-key"
    assert "anthropic-version" in sent.headers
    assert sent.body["model"] == "claude-test"
    assert sent.body["max_tokens"] == REQUEST.max_tokens
    assert sent.body["messages"] == [{"role": "user", "content": "Count the lines of data.txt."}]


async def test_anthropic_caches_the_stable_prefix() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(script="print(1)")
        async with anthropic_model(server) as model:
            await model.complete(REQUEST)
        body = server.requests[0].body
    assert body["system"] == [
        {"type": "text", "text": "You are a sub-agent."},
        {"type": "text", "text": "Skill: count lines.", "cache_control": {"type": "ephemeral"}},
    ]
    # Tools precede system in the cache order, so the system breakpoint covers them too.
    assert body["tools"] == [
        {
            "name": "submit_script",
            "description": SUBMIT_SCRIPT_TOOL.description,
            "input_schema": SUBMIT_SCRIPT_TOOL.input_schema,
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}


async def test_anthropic_without_system_marks_the_last_tool() -> None:
    request = ModelRequest(system=(), messages=REQUEST.messages)
    with FakeAnthropicServer() as server:
        server.push_reply(script="print(1)")
        async with anthropic_model(server) as model:
            await model.complete(request)
        body = server.requests[0].body
    assert "system" not in body
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_anthropic_text_only_reply_has_no_script_and_null_cache_fields_count_zero() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(
            text="I would count the lines.",
            usage={"cache_read_input_tokens": None, "cache_creation_input_tokens": None},
        )
        server.push_reply(tool_input={"notes": "forgot the script"})
        async with anthropic_model(server) as model:
            text_only = await model.complete(REQUEST)
            bad_call = await model.complete(REQUEST)
    assert text_only.script is None
    assert text_only.text == "I would count the lines."
    assert text_only.stop_reason == "end_turn"
    assert text_only.usage == Usage(input_tokens=100, output_tokens=20, requests=1)
    assert bad_call.script is None


@pytest.mark.parametrize(
    ("status", "error_type"), [(429, "rate_limit_error"), (529, "overloaded_error")]
)
async def test_anthropic_retries_then_succeeds(status: int, error_type: str) -> None:
    with FakeAnthropicServer() as server:
        server.push_error(status, error_type, retry_after=FAST)
        server.push_reply(script="print(2)")
        async with anthropic_model(server) as model:
            reply = await model.complete(REQUEST)
        retry_counts = [r.headers["x-stainless-retry-count"] for r in server.requests]
    assert reply.script == "print(2)"
    assert retry_counts == ["0", "1"]
    assert reply.attempts == 2
    assert reply.usage.requests == 1  # the failed attempt is not billed


async def test_anthropic_persistent_500_is_a_model_error() -> None:
    with FakeAnthropicServer() as server:
        for _ in range(2):
            server.push_error(500, "api_error", "Internal server error", retry_after=FAST)
        async with anthropic_model(server, max_retries=1) as model:
            with pytest.raises(ModelError) as caught:
                await model.complete(REQUEST)
        assert len(server.requests) == 2
    message = str(caught.value)
    assert "HTTP 500 api_error: Internal server error" in message
    assert "gave up after 2 attempts" in message
    assert "request-id req_fake_" in message
    assert isinstance(caught.value.__cause__, anthropic.InternalServerError)
    assert caught.value.status_code == 500


async def test_anthropic_client_errors_are_not_retried() -> None:
    with FakeAnthropicServer() as server:
        server.push_error(400, "invalid_request_error", "max_tokens: too large")
        async with anthropic_model(server) as model:
            with pytest.raises(ModelError, match="HTTP 400 invalid_request_error: max_tokens"):
                await model.complete(REQUEST)
        assert len(server.requests) == 1


async def test_anthropic_timeout_is_a_model_error() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(script="print(3)", delay_s=5)
        async with anthropic_model(server, timeout=0.3, max_retries=0) as model:
            began = time.monotonic()
            with pytest.raises(ModelError, match="timed out") as caught:
                await model.complete(REQUEST)
    assert time.monotonic() - began < 3
    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)


async def test_anthropic_connection_refused_is_a_model_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = AnthropicModel(
        model="claude-test", api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0
    )
    async with model:
        with pytest.raises(ModelError, match="connection failed after 1 attempt"):
            await model.complete(REQUEST)


async def test_anthropic_settings_fall_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicModel(model="claude-test")
    with FakeAnthropicServer() as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        server.push_reply(script="print(4)")
        async with AnthropicModel(model="claude-test", max_retries=0) as model:
            assert (await model.complete(REQUEST)).script == "print(4)"
        assert credential(server.requests[0].headers) == "sk-from-env"


async def test_anthropic_injected_client_is_used_and_left_open() -> None:
    with FakeAnthropicServer() as server:
        server.push_reply(script="print(5)")
        client = anthropic.AsyncAnthropic(api_key="k", base_url=server.base_url, max_retries=0)
        async with AnthropicModel(model="claude-test", client=client) as model:
            assert (await model.complete(REQUEST)).script == "print(5)"
        assert not client.is_closed()
        await client.close()
    with pytest.raises(ConfigError, match="not both"):
        AnthropicModel(model="m", client=client, api_key="k")


async def test_anthropic_malformed_response_is_a_model_error() -> None:
    with FakeAnthropicServer() as server:
        server.push_json(200, {"id": "msg_1", "type": "message"})  # no content, no usage
        server.push_json(200, "not an object")
        async with anthropic_model(server) as model:
            for _ in range(2):
                with pytest.raises(ModelError, match="malformed response"):
                    await model.complete(REQUEST)


async def test_fake_server_with_nothing_queued_fails_fast() -> None:
    with FakeAnthropicServer() as server:
        async with anthropic_model(server) as model:
            with pytest.raises(ModelError, match="no response queued"):
                await model.complete(REQUEST)
        assert len(server.requests) == 1  # x-should-retry: false stops the SDK's retries


# -- OpenAI-compatible ----------------------------------------------------------------------


async def test_openai_tool_call_gives_script_and_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        server.push_reply(
            script="print(1)",
            text="Done.",
            usage={"prompt_tokens": 1000, "completion_tokens": 50, "cached_tokens": 800},
        )
        async with openai_model(server) as model:
            reply = await model.complete(REQUEST)
        sent = server.requests[0]
    assert reply.script == "print(1)" and reply.text == "Done."
    # Cached tokens move out of input_tokens: the fields mean what Anthropic's mean.
    assert reply.usage == Usage(
        input_tokens=200, output_tokens=50, cache_read_input_tokens=800, requests=1
    )
    assert reply.usage.total_input_tokens == 1000
    assert (reply.model, reply.stop_reason, reply.attempts) == ("qwen-test", "tool_calls", 1)
    assert model.name == "openai:qwen-test"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer not-needed"
    assert sent.body["model"] == "qwen-test"
    assert sent.body["messages"] == [
        {"role": "system", "content": "You are a sub-agent.\n\nSkill: count lines."},
        {"role": "user", "content": "Count the lines of data.txt."},
    ]
    assert sent.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "submit_script",
                "description": SUBMIT_SCRIPT_TOOL.description,
                "parameters": SUBMIT_SCRIPT_TOOL.input_schema,
            },
        }
    ]
    assert sent.body["tool_choice"] == "auto"


async def test_openai_reply_without_tool_call_or_usage() -> None:
    with FakeOpenAIServer() as server:
        server.push_reply(text="No tools here.", with_usage=False)
        server.push_reply(arguments='{"script": "print(1)"')  # broken JSON from a small model
        async with openai_model(server) as model:
            text_only = await model.complete(REQUEST)
            broken = await model.complete(REQUEST)
    assert text_only.script is None and text_only.text == "No tools here."
    assert text_only.stop_reason == "stop"
    assert text_only.usage == Usage(requests=1)
    assert broken.script is None
    assert broken.usage == Usage(input_tokens=100, output_tokens=20, requests=1)


async def test_openai_retries_429_then_succeeds() -> None:
    with FakeOpenAIServer() as server:
        server.push_error(429, "rate_limit_exceeded", retry_after=FAST)
        server.push_reply(script="print(2)")
        async with openai_model(server) as model:
            reply = await model.complete(REQUEST)
        assert len(server.requests) == 2
    assert reply.script == "print(2)" and reply.attempts == 2 and reply.usage.requests == 1


async def test_openai_persistent_503_is_a_model_error() -> None:
    with FakeOpenAIServer() as server:
        for _ in range(2):
            server.push_error(503, "server_error", "model is loading", retry_after=FAST)
        async with openai_model(server, max_retries=1) as model:
            with pytest.raises(ModelError) as caught:
                await model.complete(REQUEST)
        assert len(server.requests) == 2
    message = str(caught.value)
    assert "HTTP 503 server_error: model is loading (gave up after 2 attempts)" in message
    assert "[request-id req_fake_" in message
    assert isinstance(caught.value.__cause__, openai.APIStatusError)
    assert caught.value.status_code == 503


async def test_openai_malformed_response_is_a_model_error() -> None:
    with FakeOpenAIServer() as server:
        server.push_json(200, {"id": "chatcmpl-1", "choices": []})
        async with openai_model(server) as model:
            with pytest.raises(ModelError, match="malformed response: no choices"):
                await model.complete(REQUEST)


async def test_openai_timeout_is_a_model_error() -> None:
    with FakeOpenAIServer() as server:
        server.push_reply(script="print(3)", delay_s=5)
        async with openai_model(server, timeout=0.3, max_retries=0) as model:
            with pytest.raises(ModelError, match="timed out"):
                await model.complete(REQUEST)


# -- ScriptedModel --------------------------------------------------------------------------

REPLIES_YAML = """\
- "print('first')"
- script: |
    print('second')
  text: Trying again.
- text: I give up.
  usage: {input_tokens: 7, output_tokens: 3}
"""


async def test_scripted_model_replays_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(REPLIES_YAML)
    model = ScriptedModel.from_file(path)
    replies = [await model.complete(REQUEST) for _ in range(3)]
    assert model.name == "scripted:demo" and model.scripted and model.remaining == 0
    assert [r.script for r in replies] == ["print('first')", "print('second')\n", None]
    assert [r.text for r in replies] == ["", "Trying again.", "I give up."]
    assert all(r.scripted and r.model == "scripted:demo" for r in replies)
    assert [r.stop_reason for r in replies] == ["tool_use", "tool_use", "end_turn"]
    # every request sends the submit_script definition: the scripted usage counts it too
    prompt_tokens = SUBMIT_SCRIPT_TOOL.tokens + sum(
        count_tokens(part) for part in [*REQUEST.system, REQUEST.messages[0].content]
    )
    assert replies[0].usage == Usage(
        input_tokens=prompt_tokens, output_tokens=count_tokens("print('first')"), requests=1
    )
    assert replies[0].usage.input_tokens > 0
    assert replies[2].usage == Usage(input_tokens=7, output_tokens=3, requests=1)
    with pytest.raises(ModelError, match="3 scripted replies are used up"):
        await model.complete(REQUEST)
    again = [await ScriptedModel.from_file(path).complete(REQUEST) for _ in range(2)]
    assert again[0] == again[1] == replies[0]  # deterministic


async def test_scripted_model_can_repeat_its_last_reply(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{"script": "print(1)", "text": "only"}]))
    model = ScriptedModel.from_file(path, when_exhausted="repeat_last")
    replies = [await model.complete(REQUEST) for _ in range(3)]
    assert {r.script for r in replies} == {"print(1)"}


async def test_scripted_model_delays_let_callers_overlap() -> None:
    # the first caller gets the slow reply: if calls did not overlap, "a" would finish first
    model = ScriptedModel([{"script": "a", "delay_s": 0.5}, {"script": "b", "delay_s": 0.01}])
    got: list[str] = []

    async def ask() -> None:
        got.append((await model.complete(REQUEST)).script or "")

    async with anyio.create_task_group() as group:
        group.start_soon(ask)
        await anyio.lowlevel.checkpoint()  # let the first call take the first reply
        group.start_soon(ask)
    assert got == ["b", "a"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("script: print(1)\n", "expected a list"),
        ("- print(1)\n- {script: x, colour: red}\n", "item 2"),
        ("- {delay_s: -1}\n", "item 1"),
        ("- [unclosed\n", "cannot read"),
    ],
)
def test_scripted_model_rejects_bad_files(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        ScriptedModel.from_file(path)


def test_scripted_model_rejects_empty_and_unknown_settings() -> None:
    with pytest.raises(ConfigError, match="no replies"):
        ScriptedModel([])
    with pytest.raises(ConfigError, match="when_exhausted"):
        ScriptedModel(["x"], when_exhausted="loop")  # type: ignore[arg-type]


# -- parse_model ----------------------------------------------------------------------------


async def test_parse_model_builds_each_form(tmp_path: Path) -> None:
    replies = tmp_path / "replies.yaml"
    replies.write_text(REPLIES_YAML)
    scripted = parse_model(f"scripted:{replies}", when_exhausted="repeat_last")
    assert isinstance(scripted, ScriptedModel) and scripted.name == "scripted:replies"
    claude = parse_model("anthropic:claude-sonnet-4-5", api_key="k")
    assert isinstance(claude, AnthropicModel) and claude.name == "anthropic:claude-sonnet-4-5"
    await claude.aclose()
    with FakeOpenAIServer() as server:
        server.push_reply(script="print(1)")
        local = parse_model(f"openai:{server.base_url}#qwen2.5-coder", max_retries=0)
        assert isinstance(local, OpenAIModel) and local.name == "openai:qwen2.5-coder"
        assert (await local.complete(REQUEST)).script == "print(1)"
        await local.aclose()
        assert server.requests[0].body["model"] == "qwen2.5-coder"


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "claude-sonnet-4-5",
        "anthropic:",
        "openai:http://127.0.0.1:8000/v1",
        "openai:http://127.0.0.1:8000/v1#",
        "openai:127.0.0.1:8000/v1#qwen",
        "scripted:",
        "gemini:pro",
    ],
)
def test_parse_model_rejects_bad_specs_showing_the_forms(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_model(spec)
    message = str(caught.value)
    assert repr(spec) in message
    for form in MODEL_SPEC_FORMS:
        assert form in message


def test_scripted_spec_with_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        parse_model(f"scripted:{tmp_path / 'nope.yaml'}")


@pytest.mark.parametrize(
    "name",
    [
        "execloop.runtime.models",
        "execloop.runtime.models.anthropic_model",
        "execloop.runtime.models.openai_model",
        "execloop.runtime.models.scripted",
    ],
)
def test_models_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, item) for item in module.__all__)
