"""The project's tokenizer: one named, offline tokenizer used for every token count execloop
computes itself (bounded memory, classic-flow estimates). Real model usage comes from the
model's responses; this is for what no response reports. Its name is printed beside figures.
"""

from __future__ import annotations

import functools
import json
import warnings
from typing import Any

__all__ = [
    "TOKENIZER_NAME",
    "compact_json",
    "count_tokens",
    "load_tokenizer",
    "tool_definition_tokens",
]

# o200k_base through bpe-openai: its vocabulary ships inside the wheel, so counting works
# offline. It approximates, not equals, Claude's tokenizer; every figure names it.
TOKENIZER_NAME = "o200k_base (bpe-openai)"


@functools.cache
def _encoding() -> Any:
    import bpe_openai

    with warnings.catch_warnings():  # bpe-openai 0.1.4 loads its vocabulary with a legacy API
        warnings.simplefilter("ignore", DeprecationWarning)
        return bpe_openai.get_encoding("o200k_base")


def load_tokenizer() -> None:
    """Load the vocabulary now (a second or more of CPU, once per process). A broker calls it in
    a worker thread before its first task: loaded on first use instead, it would stall the
    event loop that every running sub-agent shares."""
    _encoding()


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` by the project's tokenizer."""
    if not text:
        return 0
    return len(_encoding().encode(text))


def compact_json(value: Any) -> str:
    """JSON as the bridge and the classic agent send it: no spaces, Unicode kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tool_definition_tokens(name: str, description: str, input_schema: dict[str, Any]) -> int:
    """One tool definition in a request (``tools``), counted as the JSON sent: every request
    carries it, so both flows count it the same way."""
    definition = {"name": name, "description": description, "input_schema": input_schema}
    return count_tokens(compact_json(definition))
