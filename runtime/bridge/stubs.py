"""Python functions from tools' JSON Schemas: the in-sandbox module and the model's API text.

``render_module(tools)`` is the source of ``execloop_tools.py`` (stdlib only: ``guest.py``'s
source plus one generated function per tool); ``render_tool_api(tools)`` is the same functions
as signatures and docstrings for the model's prompt. Both are built as ``ast`` nodes and
unparsed, so descriptions from a tool server can never break out of a docstring.

Parameters: required ones are positional-or-keyword, optional ones keyword-only with the
schema's default (or ``None``, which is then not sent, so the tool applies its own default).
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from execloop.errors import ConfigError
from execloop.runtime.bridge import guest
from execloop.runtime.bridge.tool import Tool

__all__ = [
    "MODULE_NAME",
    "ToolDocs",
    "function_name",
    "json_type_hint",
    "render_module",
    "render_tool_api",
]

ToolDocs = Literal["full", "summary"]

MODULE_NAME = "execloop_tools"
# Names the generated module defines itself; a tool must not shadow them.
_RESERVED = frozenset(
    {"Any", "Literal", "ToolError", "annotations", "call", "json", "os", "socket"}
    | {"DEFAULT_SOCKET", "SOCKET_ENV", "TOKEN_ENV", "_invoke"}
)
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_CONSTRAINTS = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minItems",
    "maxItems",
)
_MAX_LITERALS = 24
_MAX_DEPTH = 6
_INDENT = "    "


def _identifier(name: str, taken: set[str] | frozenset[str]) -> str:
    """A Python identifier for ``name`` that is not a keyword nor in ``taken``."""
    ident = re.sub(r"\W", "_", name) or "_"
    if ident[0].isdigit():
        ident = f"_{ident}"
    while keyword.iskeyword(ident) or ident in taken:
        ident += "_"
    return ident


def function_name(tool_name: str) -> str:
    """The function a tool becomes in the module (``files.read-text`` → ``files_read_text``)."""
    return _identifier(tool_name, _RESERVED)


def json_type_hint(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> str:
    """The Python annotation (as text) for a JSON Schema; ``Any`` where it cannot say more."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return "Any"
    root = root if root is not None else schema
    if isinstance(ref := schema.get("$ref"), str):
        return json_type_hint(_resolve(ref, root), root, depth + 1)
    if "const" in schema:
        return _literal([schema["const"]])
    if isinstance(schema.get("enum"), list):
        return _literal(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _union([json_type_hint(s, root, depth + 1) for s in schema[key]])
    if isinstance(all_of := schema.get("allOf"), list) and len(all_of) == 1:
        return json_type_hint(all_of[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([json_type_hint({**schema, "type": k}, root, depth + 1) for k in kind])
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return f"list[{json_type_hint(schema.get('items'), root, depth + 1)}]"
    if kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties")
        return f"dict[str, {json_type_hint(extra, root, depth + 1)}]"
    return "Any"


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    """Local references only (``#/$defs/Point``); anything else is unknown."""
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        node = (
            node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        )
    return node


def _literal(values: list[Any]) -> str:
    if len(values) > _MAX_LITERALS or not all(
        v is None or isinstance(v, str | int | bool) for v in values
    ):
        return "Any"
    return f"Literal[{', '.join(repr(v) for v in values)}]"


def _union(hints: list[str]) -> str:
    unique = list(dict.fromkeys(hints))
    if "Any" in unique or not unique:
        return "Any"
    if "None" in unique:  # None last reads best: ``str | None``
        unique = [h for h in unique if h != "None"] + ["None"]
    return " | ".join(unique)


@dataclass(frozen=True)
class _Param:
    name: str  # as the tool knows it (JSON)
    ident: str  # as the function spells it
    hint: str
    required: bool
    default: Any
    doc: str


def _params(schema: dict[str, Any]) -> list[_Param]:
    properties: dict[str, Any] = schema.get("properties") or {}
    required = [n for n in schema.get("required") or [] if isinstance(n, str)]
    names = list(dict.fromkeys([*[n for n in properties if n in required], *required]))
    names += [n for n in properties if n not in required]
    taken = {"_invoke"}  # the one global a generated body uses
    params = []
    for name in names:
        prop = properties.get(name, {})
        ident = _identifier(name, taken)
        taken.add(ident)
        is_required = name in required
        hint = json_type_hint(prop, schema)
        default = prop.get("default") if isinstance(prop, dict) else None
        if not _json_literal(default):  # ``nan`` in a signature would fail at import
            default = None
        if not is_required and default is None and hint != "Any" and not hint.endswith("None"):
            hint = f"{hint} | None"  # the ``= None`` default
        params.append(_Param(name, ident, hint, is_required, default, _param_doc(prop, schema)))
    return params


def _param_doc(prop: Any, root: dict[str, Any]) -> str:
    if not isinstance(prop, dict):
        return ""
    parts = [str(prop.get("description", "")).strip()]
    if shape := _shape(prop, root):
        parts.append(f"Keys: {shape}.")
    limits = [f"{key} {prop[key]}" for key in _CONSTRAINTS if key in prop]
    if limits:
        parts.append(f"({', '.join(limits)})")
    return " ".join(p for p in parts if p)


def _shape(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """An object's keys one level deep, ``{x: float, label?: str}``, for the docstring."""
    if isinstance(ref := schema.get("$ref"), str):
        schema = _resolve(ref, root) or {}
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return ""
    required = set(schema.get("required") or [])
    keys = [
        f"{name}{'' if name in required else '?'}: {json_type_hint(prop, root, 1)}"
        for name, prop in properties.items()
    ]
    return "{" + ", ".join(keys) + "}"


def _summary(tool: Tool) -> str:
    """The description's first sentence: the listing's docs when ``docs="summary"``."""
    text = " ".join(tool.description.split()) or f"Call the host tool {tool.name!r}."
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]


def _docstring(tool: Tool, params: list[_Param], *, summary: bool = False) -> str:
    if summary:
        return _summary(tool)
    lines = (tool.description.strip() or f"Call the host tool {tool.name!r}.").splitlines()
    if any(p.doc for p in params):
        lines += ["", "Args:"]
        lines += [f"{_INDENT}{p.ident}: {p.doc}" for p in params if p.doc]
    output = tool.output_schema or {}
    returns = " ".join(
        part
        for part in (str(output.get("description", "")).strip(), _shape(output, output))
        if part
    )
    if returns:
        lines += ["", "Returns:", f"{_INDENT}{returns}"]
    first, *rest = lines
    body = [f"{_INDENT}{line}" if line.strip() else "" for line in rest]
    return "\n".join([first, *body, _INDENT]) if rest else first


def _json_literal(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _docstring_literal(text: str) -> str:
    """``ast`` picks the quoting, so no description can end the string early."""
    return ast.unparse(ast.Module([ast.Expr(ast.Constant(text))], type_ignores=[]))


def _function(tool: Tool, ident: str, *, with_body: bool, summary: bool = False) -> str:
    params = _params(tool.input_schema)
    required = [p for p in params if p.required]
    optional = [p for p in params if not p.required]
    parts = [f"{p.ident}: {p.hint}" for p in required]
    if optional:
        parts += ["*", *(f"{p.ident}: {p.hint} = {p.default!r}" for p in optional)]
    returns = json_type_hint(tool.output_schema) if tool.output_schema else "Any"
    lines = [
        f"def {ident}({', '.join(parts)}) -> {returns}:",
        _INDENT + _docstring_literal(_docstring(tool, params, summary=summary)),
    ]
    if with_body:
        sent = ", ".join(f"{p.name!r}: {p.ident}" for p in params)
        omitted = tuple(p.name for p in optional if p.default is None)
        lines.append(f"{_INDENT}return _invoke({tool.name!r}, {{{sent}}}, {omitted!r})")
    source = "\n".join(lines)
    try:  # every piece is an identifier, a repr or a hint built above; check anyway
        ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"tool {tool.name!r}: cannot render its signature: {exc}") from exc
    return source


def _functions(tools: list[Tool], *, with_body: bool, summary: bool = False) -> dict[str, str]:
    """Function name → source, sorted by tool name."""
    owners: dict[str, str] = {}
    sources: dict[str, str] = {}
    for tool in sorted(tools, key=lambda t: t.name):
        ident = function_name(tool.name)
        if ident in owners:
            raise ConfigError(
                f"tools {owners[ident]!r} and {tool.name!r} both become the function {ident}(); "
                "register one of them with another name or prefix"
            )
        owners[ident] = tool.name
        sources[ident] = _function(tool, ident, with_body=with_body, summary=summary)
    return sources


def render_tool_api(tools: list[Tool], *, docs: ToolDocs = "full") -> str:
    """The allowed tools as Python signatures with docstrings, for the model's prompt.

    ``docs="summary"`` keeps each docstring's first sentence only (a shorter prompt; the full
    docs stay in the sandbox's module, where ``help(name)`` prints them)."""
    if not tools:
        return "# No host tools are available to this task."
    functions = _functions(tools, with_body=False, summary=docs == "summary")
    header = (
        f"# Host tools: `from {MODULE_NAME} import {', '.join(functions)}`.\n"
        "# Each call runs on the host and returns decoded JSON; a failure raises "
        f"{MODULE_NAME}.ToolError.\n"
        + (
            f"# One-line summaries: `help({MODULE_NAME}.NAME)` in a script prints the full docs.\n"
            if docs == "summary"
            else ""
        )
        + "\n"
    )
    return header + "\n\n\n".join(functions.values()) + "\n"


def render_module(tools: list[Tool]) -> str:
    """The source of ``execloop_tools.py`` for the sandbox (standard library only)."""
    functions = _functions(tools, with_body=True)
    exported = sorted(["ToolError", "call", *functions])
    return (
        Path(guest.__file__).read_text(encoding="utf-8")
        + "\n\n# --- generated from the tools this task allows ---\n\n\n"
        + "".join(f"{source}\n\n\n" for source in functions.values())
        + f"__all__ = {exported!r}\n"
    )
