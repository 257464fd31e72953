"""Python callables as tools: the arguments' JSON Schema from the signature and type hints.

Pydantic builds the schema (``create_model``) and validates arguments into the annotated types
before the call, so a parameter annotated with a model receives that model. The docstring's
summary becomes the description and its Google-style ``Args:`` entries the parameters' ones.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, get_type_hints

import anyio.to_thread
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema, to_jsonable_python

from execloop.errors import ConfigError
from execloop.runtime.bridge.tool import Tool, ToolFailure, check_tool

__all__ = ["parse_docstring", "tool_from_function"]

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_PARAM_LINE = re.compile(r"^(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class _NoFieldTitles(GenerateJsonSchema):
    """Per-field titles ("Query" for ``query``) only cost prompt tokens."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> dict[str, Any]:
        generated = super().model_schema(schema)
        generated.pop("title", None)
        return generated


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A Google-style docstring's summary (everything before the first section) and its
    ``Args:`` descriptions (continuation lines are indented deeper than the names)."""
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    name_indent: int | None = None
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if match := _SECTION.match(stripped):
            section, name_indent, current = match.group(1), None, None
        elif section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters") and stripped:
            param = _PARAM_LINE.match(stripped)
            if param and (name_indent is None or indent <= name_indent):
                name_indent, current = indent, param.group(1)
                params[current] = param.group(2).strip()
            elif current is not None:
                params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(summary).strip(), params


def tool_from_function(
    fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> Tool:
    """A ``Tool`` for a sync or async callable; its arguments' schema comes from its signature."""
    tool_name = name or fn.__name__
    summary, param_docs = parse_docstring(inspect.getdoc(fn) or "")
    try:
        hints = get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise ConfigError(f"tool {tool_name!r}: cannot resolve its type hints: {exc}") from exc
    # Fields get neutral names and the parameters' names as aliases, so that parameters such as
    # ``json`` or ``model_config`` cannot clash with pydantic's own attributes.
    fields: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for index, (pname, param) in enumerate(inspect.signature(fn).parameters.items()):
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise ConfigError(
                f"tool {tool_name!r}: parameter {pname!r} is {param.kind.description}; "
                "tools take named parameters only (they are called with a JSON object)"
            )
        extra: dict[str, Any] = {"alias": pname}
        if pname in param_docs:
            extra["description"] = param_docs[pname]
        default = ... if param.default is param.empty else param.default
        fields[f"p{index}"] = (hints.get(pname, Any), Field(default, **extra))
        aliases[f"p{index}"] = pname
    try:
        model = create_model(
            f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        input_schema = model.model_json_schema(schema_generator=_NoFieldTitles)
    except Exception as exc:  # pydantic raises several types for unsupported annotations
        raise ConfigError(f"tool {tool_name!r}: cannot build its argument schema: {exc}") from exc
    output_schema = _output_schema(hints.get("return", inspect.Signature.empty))
    is_async = inspect.iscoroutinefunction(fn)

    async def handler(arguments: dict[str, Any]) -> Any:
        try:
            validated = model.model_validate(arguments)
        except ValidationError as exc:  # custom validators may refuse what the schema allows
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ToolFailure(f"arguments rejected: {first['msg']} at {where}") from exc
        kwargs = {alias: getattr(validated, key) for key, alias in aliases.items()}
        if is_async:
            result = await fn(**kwargs)
        else:  # a timed-out sync tool's thread is abandoned: Python cannot kill threads
            result = await anyio.to_thread.run_sync(
                functools.partial(fn, **kwargs), abandon_on_cancel=True
            )
            if inspect.isawaitable(result):  # e.g. a callable object with an async __call__
                result = await result
        return to_jsonable_python(result)

    tool = Tool(
        name=tool_name,
        description=description if description is not None else summary,
        input_schema=input_schema,
        output_schema=output_schema,
        origin=f"python:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}",
        handler=handler,
    )
    check_tool(tool)
    return tool


def _output_schema(annotation: Any) -> dict[str, Any] | None:
    if annotation is inspect.Signature.empty or annotation is Any:
        return None
    try:
        return TypeAdapter(annotation).json_schema(
            mode="serialization", schema_generator=_NoFieldTitles
        )
    except Exception:  # an arbitrary return type only loses its hint
        return None
