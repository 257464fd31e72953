"""Test doubles shipped with execloop, as httpx ships ``MockTransport`` and pydantic-ai
``TestModel``: drive the loop and the broker without Docker and without an LLM.

- ``FakeSandbox`` / ``FakeBackend``: the Sandbox contract in memory; runs call your handler.
- ``FunctionModel``: replies computed from each request.
- ``ScriptedModel``: replies replayed in order (also behind ``--model scripted:FILE``).
- ``ReplayModelServer``: a loopback model speaking the real Anthropic/OpenAI JSON, following a
  plan (``ToolUse``, ``FinalText``, ``SubmitScript``); it ships in the runtime because replay is
  a mode of ``execloop bench tokens``. ``LoopbackServer`` is its base, for fakes of your own.

    from execloop.runtime.loop import SubAgent
    from execloop.runtime.task import Task
    from execloop.testing import FakeBackend, FunctionModel

    def handler(run):
        run.files["result.json"] = b'{"rows": 3}'

    agent = SubAgent(
        Task(goal="count the rows"),
        model=FunctionModel(lambda request, number: "print('hi')"),
        sandbox_factory=FakeBackend(handler),
    )
"""

from __future__ import annotations

from execloop.runtime.benchmarks.loopback import LoopbackServer, PlannedResponse, RecordedRequest
from execloop.runtime.benchmarks.replay import (
    FinalText,
    PlanStep,
    ReplayModelServer,
    SubmitScript,
    ToolUse,
)
from execloop.runtime.models.scripted import ScriptedModel, ScriptedReply
from execloop.testing.fake_sandbox import FakeBackend, FakeRun, FakeSandbox, Handler
from execloop.testing.function_model import FunctionModel, ReplyFunction

__all__ = [
    "FakeBackend",
    "FakeRun",
    "FakeSandbox",
    "FinalText",
    "FunctionModel",
    "Handler",
    "LoopbackServer",
    "PlanStep",
    "PlannedResponse",
    "RecordedRequest",
    "ReplayModelServer",
    "ReplyFunction",
    "ScriptedModel",
    "ScriptedReply",
    "SubmitScript",
    "ToolUse",
]
