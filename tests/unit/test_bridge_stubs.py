"""The tool bridge without Docker: schemas from callables, signatures from schemas, the module."""

from __future__ import annotations

import importlib
import inspect
import json
import socket
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

import anyio
import pytest
from pydantic import BaseModel, Field

from execloop import DockerSandbox
from execloop.errors import ConfigError
from execloop.runtime.bridge import (
    Tool,
    ToolBridge,
    ToolFailure,
    ToolRegistry,
    render_module,
    render_tool_api,
    tool_from_function,
)
from execloop.runtime.bridge.functions import parse_docstring
from execloop.runtime.bridge.gate import CallGate
from execloop.runtime.bridge.stubs import function_name, json_type_hint
from execloop.runtime.tokens import count_tokens


async def _never(arguments: dict[str, Any]) -> Any:
    raise AssertionError("not called in these tests")


def schema_tool(
    name: str,
    properties: dict[str, Any],
    required: list[str] | None = None,
    *,
    description: str = "",
    output: dict[str, Any] | None = None,
) -> Tool:
    schema = {"type": "object", "properties": properties, "required": required or []}
    return Tool(
        name=name,
        description=description,
        input_schema=schema,
        output_schema=output,
        handler=_never,
    )


SEARCH = schema_tool(
    "search",
    {
        "query": {"type": "string", "description": "Text to look for."},
        "limit": {"type": "integer", "default": 10, "minimum": 1, "description": "At most."},
        "lang": {"enum": ["en", "de"]},
        "since": {"type": "string", "format": "date"},
    },
    ["query"],
    description="Search the catalogue.",
    output={"type": "array", "items": {"type": "string"}},
)


# -- JSON Schema → Python --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schema", "hint"),
    [
        ({"type": "string"}, "str"),
        ({"type": "integer"}, "int"),
        ({"type": "number"}, "float"),
        ({"type": "boolean"}, "bool"),
        ({"type": "null"}, "None"),
        ({"type": "array", "items": {"type": "integer"}}, "list[int]"),
        ({"type": "array"}, "list[Any]"),
        ({"type": "object"}, "dict[str, Any]"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "dict[str, float]"),
        ({"type": ["string", "null"]}, "str | None"),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, "int | None"),
        ({"enum": ["a", "b", 3]}, "Literal['a', 'b', 3]"),
        ({"const": "x"}, "Literal['x']"),
        ({"enum": [{"not": "literal"}]}, "Any"),
        ({"anyOf": [{"type": "string"}, {}]}, "Any"),
        ({}, "Any"),
        ("not a schema", "Any"),
    ],
)
def test_json_type_hints(schema: Any, hint: str) -> None:
    assert json_type_hint(schema) == hint


def test_local_refs_are_resolved() -> None:
    root = {
        "$defs": {"Tag": {"type": "string"}},
        "type": "array",
        "items": {"$ref": "#/$defs/Tag"},
    }
    assert json_type_hint(root) == "list[str]"
    assert json_type_hint({"$ref": "https://example.com/x.json"}) == "Any"


def test_a_self_referencing_schema_ends() -> None:
    root = {"$defs": {"N": {"type": "array", "items": {"$ref": "#/$defs/N"}}}, "$ref": "#/$defs/N"}
    assert json_type_hint(root).startswith("list[list[")
    assert json_type_hint(root).count("[") < 10


@pytest.mark.parametrize(
    ("tool", "function"),
    [
        ("search", "search"),
        ("files.read-text", "files_read_text"),
        ("call", "call_"),
        ("ToolError", "ToolError_"),
        ("class", "class_"),
        ("9lives", "_9lives"),
    ],
)
def test_tool_names_become_identifiers_that_shadow_nothing(tool: str, function: str) -> None:
    assert function_name(tool) == function


# -- rendering ---------------------------------------------------------------------------------
def test_the_api_text_has_real_signatures_and_docstrings() -> None:
    api = render_tool_api([SEARCH])
    assert "from execloop_tools import search" in api
    assert (
        "def search(query: str, *, limit: int = 10, lang: Literal['en', 'de'] | None = None, "
        "since: str | None = None) -> list[str]:\n"
        '    """Search the catalogue.\n'
        "\n"
        "    Args:\n"
        "        query: Text to look for.\n"
        "        limit: At most. (minimum 1)\n"
        "        since: (format date)\n"
        '    """\n'
    ) in api
    compile(api, "<api>", "exec")


def test_the_summary_listing_keeps_signatures_and_first_sentences_only() -> None:
    key = {"key": {"type": "string", "description": "The key, as stored in the table."}}
    text = "Look a key up. It reads the\nwhole table. " + "Keys are case-sensitive. " * 8
    tool = schema_tool("lookup", key, ["key"], description=text)
    full, short = render_tool_api([tool]), render_tool_api([tool], docs="summary")
    assert "def lookup(key: str) -> Any:" in short and "Args:" in full
    assert '    """Look a key up."""' in short and "whole table" not in short
    assert "help(execloop_tools.NAME)" in short and count_tokens(short) < count_tokens(full)
    compile(short, "<api>", "exec")
    assert "whole table" in render_module([tool])  # the full docs stay in the sandbox


def test_an_object_parameter_and_result_list_their_keys() -> None:
    point = {
        "type": "object",
        "properties": {"x": {"type": "number"}, "label": {"type": "string"}},
        "required": ["x"],
    }
    api = render_tool_api(
        [schema_tool("plot", {"at": point}, ["at"], output={**point, "description": "Where."})]
    )
    assert "def plot(at: dict[str, Any]) -> dict[str, Any]:" in api
    assert "at: Keys: {x: float, label?: str}." in api
    assert "Returns:\n        Where. {x: float, label?: str}" in api


def test_no_tools_render_a_clear_line() -> None:
    assert render_tool_api([]) == "# No host tools are available to this task."


def test_parameter_names_that_are_not_identifiers_are_renamed_and_mapped_back(
    tmp_path: Path,
) -> None:
    tool = schema_tool(
        "fetch", {"from": {"type": "string"}, "max-items": {"type": "integer"}}, ["from"]
    )
    module = load_module(tmp_path, [tool])
    signature = inspect.signature(module.fetch)
    assert list(signature.parameters) == ["from_", "max_items"]
    assert "return _invoke('fetch', {'from': from_, 'max-items': max_items}, ('max-items',))" in (
        inspect.getsource(module.fetch)
    )


def test_two_tools_with_the_same_function_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="both become the function a_b"):
        render_module([schema_tool("a.b", {}), schema_tool("a-b", {})])


@pytest.mark.parametrize(
    "description",
    ['Ends early? """\nimport os; os.system("x")\n"""', "both ''' and \"\"\" and \\ too", "x\\"],
)
def test_descriptions_cannot_break_out_of_the_docstring(description: str, tmp_path: Path) -> None:
    tool = schema_tool("t", {"a": {"type": "string", "description": description}}, ["a"])
    tool = Tool(
        name="t",
        description=description,
        input_schema=tool.input_schema,
        handler=_never,
    )
    module = load_module(tmp_path, [tool])
    assert (inspect.getdoc(module.t) or "").startswith(
        inspect.cleandoc(description).splitlines()[0]
    )
    assert [name for name in vars(module) if not name.startswith("_")] == [
        "annotations",
        "json",
        "os",
        "socket",
        "Any",
        "Literal",
        "SOCKET_ENV",
        "TOKEN_ENV",
        "DEFAULT_SOCKET",
        "ToolError",
        "call",
        "t",
    ]


def test_a_default_that_is_not_json_becomes_none() -> None:
    tool = schema_tool("t", {"x": {"type": "number", "default": float("nan")}})
    assert "def t(*, x: float | None = None) -> Any:" in render_tool_api([tool])


# -- the generated module ---------------------------------------------------------------------
def load_module(tmp_path: Path, tools: list[Tool]) -> ModuleType:
    (tmp_path / "execloop_tools.py").write_text(render_module(tools))
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop("execloop_tools", None)
        return importlib.import_module("execloop_tools")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("execloop_tools", None)


def test_the_generated_module_compiles_and_has_the_signatures(tmp_path: Path) -> None:
    source = render_module([SEARCH])
    compile(source, "execloop_tools.py", "exec")
    module = load_module(tmp_path, [SEARCH])
    assert module.__all__ == ["ToolError", "call", "search"]
    params = inspect.signature(module.search).parameters
    assert [(p.name, p.kind.name, p.default) for p in params.values()] == [
        ("query", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("limit", "KEYWORD_ONLY", 10),
        ("lang", "KEYWORD_ONLY", None),
        ("since", "KEYWORD_ONLY", None),
    ]
    assert "import execloop" not in source  # standard library only


class FakeBridge:
    """A Unix socket answering like the host bridge; records what the module sent."""

    def __init__(self, path: Path, reply: dict[str, Any]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply = reply
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                self.requests.append(json.loads(lines.readline()))
                conn.sendall(json.dumps(self.reply).encode() + b"\n")


@pytest.fixture
def module_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Any]:
    path = tmp_path / "tools.sock"
    monkeypatch.setenv("EXECLOOP_TOOLS_SOCKET", str(path))
    monkeypatch.setenv("EXECLOOP_TOOLS_TOKEN", "tok")
    return path, load_module(tmp_path, [SEARCH])


def test_the_module_sends_the_token_and_omits_unset_optionals(module_env: Any) -> None:
    path, module = module_env
    bridge = FakeBridge(path, {"ok": True, "result": ["a", "b"]})
    assert module.search("cats", since="2024-01-01") == ["a", "b"]
    assert bridge.requests == [
        {
            "token": "tok",
            "tool": "search",
            "arguments": {"query": "cats", "limit": 10, "since": "2024-01-01"},
        }
    ]


def test_an_error_reply_raises_tool_error_with_kind_and_message(module_env: Any) -> None:
    path, module = module_env
    FakeBridge(path, {"ok": False, "error": {"type": "timeout", "message": "too slow"}})
    with pytest.raises(module.ToolError, match="too slow") as caught:
        module.search("cats")
    assert caught.value.kind == "timeout"


def test_no_bridge_raises_a_tool_error_saying_so(module_env: Any) -> None:
    _, module = module_env
    with pytest.raises(module.ToolError, match="unreachable") as caught:
        module.call("search", {"query": "x"})
    assert caught.value.kind == "unreachable"


# -- callables → tools -----------------------------------------------------------------------
class Point(BaseModel):
    x: float
    y: float = 0.0


def test_a_callable_gets_its_schema_from_signature_hints_and_docstring() -> None:
    def search(
        query: str,
        limit: Annotated[int, Field(ge=1, description="At most this many.")] = 10,
        mode: Literal["fast", "exact"] = "fast",
        json: bool = False,
    ) -> list[str]:
        """Search the catalogue.

        Longer explanation.

        Args:
            query: What to look for;
                any text.
            mode (str): How hard to look.
        Returns:
            Matching titles.
        """
        return []

    tool = tool_from_function(search)
    assert tool.name == "search"
    assert tool.description == "Search the catalogue.\n\nLonger explanation."
    assert tool.input_schema == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "query": {"type": "string", "description": "What to look for; any text."},
            "limit": {
                "type": "integer",
                "default": 10,
                "minimum": 1,
                "description": "At most this many.",
            },
            "mode": {
                "type": "string",
                "enum": ["fast", "exact"],
                "default": "fast",
                "description": "How hard to look.",
            },
            "json": {"type": "boolean", "default": False},
        },
        "required": ["query"],
    }
    assert tool.output_schema == {"type": "array", "items": {"type": "string"}}
    assert tool.origin.endswith("search")


def test_models_in_parameters_are_validated_into_models() -> None:
    seen: list[Any] = []

    async def dist(a: Point, b: Point) -> float:
        """Distance."""
        seen.append(a)
        return float(((a.x - b.x) ** 2 + (a.y - b.y) ** 2) ** 0.5)

    tool = tool_from_function(dist)
    assert tool.input_schema["$defs"]["Point"]["required"] == ["x"]
    assert json_type_hint(tool.input_schema["properties"]["a"], tool.input_schema) == (
        "dict[str, Any]"
    )
    result = anyio.run(tool.call, {"a": {"x": 3, "y": 4}, "b": {"x": 0}})
    assert result == 5.0
    assert isinstance(seen[0], Point)


def test_sync_tools_run_and_results_become_json() -> None:
    def points() -> list[Point]:
        return [Point(x=1)]

    assert anyio.run(tool_from_function(points).call, {}) == [{"x": 1.0, "y": 0.0}]


def test_a_validator_refusal_is_a_tool_failure() -> None:
    def positive(n: Annotated[int, Field(gt=0)]) -> int:
        return n

    with pytest.raises(ToolFailure, match="greater than 0 at n"):
        anyio.run(tool_from_function(positive).call, {"n": -1})


def test_registry_decorator_forms_and_lookup() -> None:
    registry = ToolRegistry()

    @registry.tool
    def one() -> int:
        return 1

    @registry.tool(name="two.x", description="Two.")
    def two() -> int:
        return 2

    assert one() == 1 and two() == 2  # the functions are returned unchanged
    assert registry.names == ["one", "two.x"]
    assert registry.get("two.x").description == "Two."
    assert "one" in registry and len(registry) == 2
    with pytest.raises(ConfigError, match="already registered"):
        registry.tool(one)
    with pytest.raises(ConfigError, match="no tool named 'three'"):
        registry.get("three")


def test_bad_registrations_are_config_errors() -> None:
    def star(*values: int) -> int:
        return 0

    def positional(a: int, /) -> int:
        return a

    with pytest.raises(ConfigError, match="parameter 'values' is variadic positional"):
        tool_from_function(star)
    with pytest.raises(ConfigError, match="named parameters only"):
        tool_from_function(positional)
    with pytest.raises(ConfigError, match="must match"):
        tool_from_function(lambda: 0, name="has space")
    with pytest.raises(ConfigError, match="invalid input schema"):
        ToolRegistry().add(schema_tool("t", {"a": {"type": "nonsense"}}))


def test_google_docstring_parsing() -> None:
    summary, params = parse_docstring(
        "Do it.\n\nArgs:\n    a: First\n        continued.\n    b (int): Second.\n\nRaises:\n"
        "    ValueError: never."
    )
    assert summary == "Do it."
    assert params == {"a": "First continued.", "b": "Second."}


@pytest.mark.parametrize(
    "name",
    [
        "execloop.runtime.bridge",
        "execloop.runtime.bridge.functions",
        "execloop.runtime.bridge.gate",
        "execloop.runtime.bridge.guest",
        "execloop.runtime.bridge.mcp_tools",
        "execloop.runtime.bridge.registry",
        "execloop.runtime.bridge.server",
        "execloop.runtime.bridge.stubs",
        "execloop.runtime.bridge.tool",
    ],
)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, item) for item in module.__all__)


# -- the gate every call goes through (no socket needed) -----------------------------------------
def gate_for(*tools: Tool, budget: int = 10, timeout: float = 1.0) -> CallGate:
    return CallGate(tools, token="tok", call_budget=budget, call_timeout_s=timeout)


def ask(gate: CallGate, line: bytes | None) -> dict[str, Any]:
    reply = anyio.run(gate.handle, line)
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1  # one line, always
    decoded: dict[str, Any] = json.loads(reply)
    return decoded


def request(tool: str, token: str = "tok", **arguments: Any) -> bytes:
    return json.dumps({"token": token, "tool": tool, "arguments": arguments}).encode()


def test_malformed_and_oversized_requests_are_refused_and_recorded() -> None:
    gate = gate_for()
    assert ask(gate, b"{not json")["error"]["type"] == "bad_request"
    assert ask(gate, b"[1]")["error"]["message"] == "the request must be a JSON object"
    assert ask(gate, None)["error"]["message"] == "the request is too large"
    assert [r.error_type for r in gate.trace] == ["bad_request"] * 3
    assert gate.calls_used == 0


def test_refusals_outside_the_budget_are_recorded_up_to_a_bound() -> None:
    gate = gate_for(budget=0)
    for _ in range(150):
        assert ask(gate, request("x", token="bad"))["error"]["type"] == "bad_token"
    assert len(gate.trace) == 100
    assert gate.dropped_records == 50


def test_a_timeout_error_raised_by_the_tool_is_its_error_not_the_deadline() -> None:
    def fetch() -> str:
        raise TimeoutError("upstream took too long")

    def weird() -> float:
        return float("nan")

    gate = gate_for(tool_from_function(fetch), tool_from_function(weird))
    assert ask(gate, request("fetch"))["error"] == {
        "type": "tool_error",
        "message": "tool 'fetch' raised TimeoutError: upstream took too long",
    }
    assert ask(gate, request("weird"))["error"]["message"].startswith(
        "tool 'weird' returned a value that is not JSON"
    )


def test_a_success_reply_carries_the_result_and_its_size() -> None:
    def greet(name: str) -> str:
        return f"hé {name}"

    gate = gate_for(tool_from_function(greet))
    assert ask(gate, request("greet", name="ann")) == {"ok": True, "result": "hé ann"}
    record = gate.trace[0]
    assert (record.tool, record.argument_bytes, record.result_bytes) == ("greet", 14, 9)
    assert record.ok and record.timestamp.tzinfo is not None


def test_a_bridge_refuses_what_it_cannot_serve() -> None:
    registry = ToolRegistry()
    registry.tool(lambda: 1, name="one")
    with pytest.raises(ConfigError, match=r"allowed tools \['two'\] are not registered"):
        ToolBridge(DockerSandbox(), registry, allow=["one", "two"])
    never_started = ToolBridge(DockerSandbox(), registry, allow=["one"])
    with pytest.raises(ConfigError, match="needs a started sandbox"):
        anyio.run(never_started.__aenter__)
    assert "def one() -> Any:" in never_started.api


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("/nonexistent/server", [], "could not start or reach the MCP server"),
        (sys.executable, ["-c", "raise SystemExit(3)"], "failed to initialize: Connection closed"),
    ],
)
def test_an_mcp_server_that_cannot_start_is_a_config_error(
    command: str, args: list[str], message: str
) -> None:
    async def register() -> None:
        async with ToolRegistry() as registry:
            await registry.add_mcp_stdio(command, args)

    with pytest.raises(ConfigError, match=message):
        anyio.run(register)
