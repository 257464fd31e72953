"""Reading a skill's files: bounded UTF-8 text, YAML front matter with file:line marks, and
pydantic errors put in a skill author's terms (``checks[2].expr: ...``).

Every problem is a ``SkillError`` (or the ``ConfigError`` class a caller asks for) that names
the file, so ``execloop skills validate`` and the loaders can show it on one line.
"""

from __future__ import annotations

import io
import os
import stat
import tokenize
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from execloop.errors import ConfigError, SkillError
from execloop.runtime.checks import CheckSpec
from execloop.sandboxes.spec import SandboxSpec

__all__ = [
    "CHECK_MODELS",
    "MAX_TEXT_BYTES",
    "decode_python",
    "field_path",
    "front_matter",
    "invalid",
    "read_bytes",
    "read_text",
    "yaml_fields",
]

CHECK_MODELS: dict[str, type[BaseModel]] = {
    cls.model_fields["kind"].default: cls for cls in get_args(get_args(CheckSpec)[0])
}
MAX_TEXT_BYTES = 1024**2  # a SKILL.md, an example.yaml or a task.json is text, not data


def read_bytes(file: Path, error: type[ConfigError]) -> bytes:
    """A regular file of at most ``MAX_TEXT_BYTES``; anything else is ``error`` naming it.
    Opened non-blocking, so a fifo under the name cannot hang the caller."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise error(f"{file}: not a regular file")
            data = handle.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise error(f"{file}: cannot read it: {exc.strerror or exc}") from exc
    if len(data) > MAX_TEXT_BYTES:
        raise error(f"{file}: larger than {MAX_TEXT_BYTES // 1024**2} MiB; it should be text")
    return data


def read_text(file: Path, error: type[ConfigError] = SkillError) -> str:
    """``read_bytes`` decoded as UTF-8, or ``error`` naming the first bad byte."""
    data = read_bytes(file, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{file}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from exc


def decode_python(file: Path) -> str:
    """A Python source file decoded as Python decodes it (PEP 263: a coding cookie, or UTF-8)."""
    data = read_bytes(file, SkillError)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        raise SkillError(f"{file}: cannot decode the script: {exc}") from exc


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('checks', 2, 'expression', 'expr')`` -> ``checks[2].expr`` (drops union tags)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (i and isinstance(loc[i - 1], int) and part in CHECK_MODELS):
            out += f".{part}" if out else part
    return out


def _explain(error: Mapping[str, Any], model: type[BaseModel], hidden: set[str]) -> str:
    """One pydantic error as ``what is expected``, in the skill author's terms."""
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        owner: type[BaseModel] = model
        if loc[0] == "sandbox":
            owner, hidden = SandboxSpec, {"workspace_dir"}
        elif loc[0] == "checks" and len(loc) > 2:
            owner, hidden = CHECK_MODELS[str(loc[2])], set()
        known = [f.alias or name for name, f in owner.model_fields.items() if name not in hidden]
        return f"unknown field; expected one of: {', '.join(known)}"
    if kind == "union_tag_invalid":
        return f"unknown check kind {ctx['tag']!r}; expected one of: {', '.join(CHECK_MODELS)}"
    if kind == "union_tag_not_found":
        return f"a check needs a 'kind', one of: {', '.join(CHECK_MODELS)}"
    if kind == "missing":
        return "required field is missing"
    message = str(ctx["error"]) if kind in ("value_error", "assertion_error") else error["msg"]
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and kind != "value_error":
        message += f" (got {value!r:.60})"
    return message


def invalid(file: Path, exc: ValidationError, model: type[BaseModel], hidden: set[str]) -> str:
    """``exc`` as ``FILE: invalid (N problems):`` then one indented line per problem."""
    lines = []
    for error in exc.errors():
        where = field_path(tuple(error["loc"]))
        for line in _explain(error, model, hidden).splitlines():
            # model-level problems already start with their own field path
            lines.append(f"{where}: {line}" if where else line)
    count = f"{len(lines)} problem{'' if len(lines) == 1 else 's'}"
    return f"{file}: invalid ({count}):\n  " + "\n  ".join(lines)


def yaml_fields(text: str, file: Path, first_line: int) -> dict[str, Any]:
    """``text`` (starting at line ``first_line`` of ``file``) parsed as a YAML mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark, begun = exc.problem_mark or exc.context_mark, exc.context_mark
        at = f":{mark.line + first_line}:{mark.column + 1}" if mark else ""
        context = f"{exc.context} (line {begun.line + first_line})" if exc.context and begun else ""
        what = ": ".join(filter(None, [context, exc.problem]))
        raise SkillError(f"{file}{at}: YAML syntax error: {what}") from exc
    except yaml.YAMLError as exc:
        raise SkillError(f"{file}: YAML error: {exc}") from exc
    if not isinstance(data, dict):
        raise SkillError(f"{file}: expected YAML fields (a mapping), got {type(data).__name__}")
    return data


def front_matter(text: str, file: Path) -> tuple[dict[str, Any], str]:
    """A SKILL.md's YAML fields and the markdown after them."""
    lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].rstrip() != "---":
        raise SkillError(
            f"{file}: no front matter: the file must start with a line '---', then the YAML "
            "fields (name, description, version, inputs, checks, ...), then a line '---', "
            "then the markdown instructions"
        )
    end = next((i for i, line in enumerate(lines[1:], 1) if line.rstrip() == "---"), None)
    if end is None:
        raise SkillError(f"{file}: the front matter is not closed: add a line '---' after it")
    # YAML line 0 is file line 2: marks are 0-based and the opening '---' is line 1.
    return yaml_fields("".join(lines[1:end]), file, first_line=2), "".join(lines[end + 1 :])
