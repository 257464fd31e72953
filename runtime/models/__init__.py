"""Model adapters behind one small protocol (see base.py), and ``parse_model`` for ``--model``.

The two provider adapters load lazily: importing the ``anthropic`` and ``openai`` SDKs costs
seconds, which the CLI, the scripted demo and anything importing ``base`` should not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from execloop.errors import ConfigError
from execloop.runtime.models.base import (
    SUBMIT_SCRIPT_TOOL,
    Message,
    Model,
    ModelReply,
    ModelRequest,
    ToolDefinition,
)
from execloop.runtime.models.scripted import ScriptedModel, ScriptedReply

if TYPE_CHECKING:
    from execloop.runtime.models.anthropic_model import AnthropicModel
    from execloop.runtime.models.openai_model import OpenAIModel

__all__ = [
    "AnthropicModel",
    "MODEL_SPEC_FORMS",
    "Message",
    "Model",
    "ModelReply",
    "ModelRequest",
    "OpenAIModel",
    "SUBMIT_SCRIPT_TOOL",
    "ScriptedModel",
    "ScriptedReply",
    "ToolDefinition",
    "parse_model",
]

MODEL_SPEC_FORMS = (
    "anthropic:MODEL             e.g. anthropic:claude-sonnet-4-5 (ANTHROPIC_API_KEY, "
    "ANTHROPIC_BASE_URL)",
    "openai:BASE_URL#MODEL       e.g. openai:http://127.0.0.1:8000/v1#qwen2.5-coder",
    "scripted:FILE               e.g. scripted:replies.yaml (YAML or JSON list of replies)",
)

_LAZY = {
    "AnthropicModel": "execloop.runtime.models.anthropic_model",
    "OpenAIModel": "execloop.runtime.models.openai_model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_model(spec: str, **overrides: Any) -> Model:
    """Build the model a ``--model`` spec names; ``overrides`` go to its constructor
    (e.g. ``timeout=``, ``max_retries=``, ``base_url=`` for Anthropic, ``when_exhausted=``)."""
    kind, _, rest = spec.partition(":")
    rest = rest.strip()
    if kind == "anthropic" and rest:
        from execloop.runtime.models.anthropic_model import AnthropicModel

        return AnthropicModel(model=rest, **overrides)
    if kind == "openai":
        base_url, _, model = rest.rpartition("#")
        if base_url.startswith(("http://", "https://")) and model:
            from execloop.runtime.models.openai_model import OpenAIModel

            return OpenAIModel(base_url=base_url, model=model, **overrides)
    if kind == "scripted" and rest:
        return ScriptedModel.from_file(rest, **overrides)
    forms = "\n  ".join(MODEL_SPEC_FORMS)
    raise ConfigError(f"bad model spec {spec!r}; use one of:\n  {forms}")
