"""Loopback fakes of the LLM providers: real HTTP servers on 127.0.0.1 speaking the real JSON.

Tests drive the real SDK clients against them (never patching library code)::

    with FakeAnthropicServer() as server:
        server.push_error(429, "rate_limit_error", retry_after=0.001)
        server.push_reply(script="print(1)", usage={"cache_read_input_tokens": 900})
        ...  # AnthropicModel(base_url=server.base_url, api_key="k", ...)
        assert server.requests[-1].body["model"] == "claude-test"
"""

from execloop.testing import LoopbackServer, PlannedResponse, RecordedRequest

from .anthropic_server import FakeAnthropicServer
from .openai_server import FakeOpenAIServer

__all__ = [
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "LoopbackServer",
    "PlannedResponse",
    "RecordedRequest",
]
