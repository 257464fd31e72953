"""Skills: ``skills/<name>/SKILL.md`` folders, loaded and validated.

A SKILL.md is YAML front matter between two ``---`` lines, then the markdown instructions the
sub-agent reads. The front matter is the Agent Skills one (``name``, ``description``) plus what
execloop needs to run and judge a skill's scripts: ``version``, an ``inputs`` JSON Schema (the
``task.json`` a script finds in its workspace), ``defaults`` for those inputs, ``checks``,
``sandbox`` requirements, ``tools`` and worked ``examples`` (folders with an ``example.yaml``).
Every problem becomes one ``SkillError`` naming the file, the field path (``checks[2].expr``)
and what is expected, so a skill author can fix it without reading this module.
"""

from __future__ import annotations

import ast
import importlib.resources
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, get_args

import jsonschema
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from execloop.errors import ConfigError, SkillError
from execloop.runtime.checks import CheckSpec, ExpressionCheck, JsonSchemaCheck, PytestCheck
from execloop.sandboxes.spec import SandboxSpec

__all__ = [
    "Example",
    "Skill",
    "builtin_skills_dir",
    "find_skill",
    "list_skills",
    "load_example",
    "load_skill",
]

_NAME = re.compile(r"(?=.{1,64}$)[a-z0-9]+(-[a-z0-9]+)*")
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
)
_TOOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_CHECK_MODELS: dict[str, type[BaseModel]] = {
    cls.model_fields["kind"].default: cls for cls in get_args(get_args(CheckSpec)[0])
}
# What each text field of the front matter must be: (what is expected, test).
_TEXT_RULES: dict[str, tuple[str, Callable[[str], object]]] = {
    "name": ("lowercase letters, digits and single hyphens (≤ 64)", _NAME.fullmatch),
    "version": ("a semantic version such as 1.0.0", _SEMVER.fullmatch),
    "description": ("1 to 1024 characters", lambda text: 0 < len(text) <= 1024),
    "instructions": ("markdown instructions after the front matter", bool),
}
# Resource limits a skill states as minimums: merging keeps the larger of skill and base.
_MINIMUMS = ("cpus", "memory", "pids", "timeout_s", "workspace_size", "tmp_size", "start_timeout_s")


def _schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (checked against its own meta-schema)."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(part) for part in exc.path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    return None


def _relative_file(folder: Path, name: str) -> str | None:
    """Why ``name`` is not an existing file inside ``folder``."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        return f"{name!r} must be a path relative to {folder}, without '..'"
    return None if (folder / pure).is_file() else f"file {name!r} not found in {folder}"


def _check_problems(checks: Sequence[Any], skill_folder: Path) -> list[str]:
    """What pydantic cannot see in checks: files on disk, schema and expression validity."""
    problems = []
    for i, check in enumerate(checks):
        if isinstance(check, PytestCheck) and (why := _relative_file(skill_folder, check.file)):
            problems.append(f"checks[{i}].file: pytest {why}")
        if isinstance(check, JsonSchemaCheck) and (why := _schema_problem(check.json_schema)):
            problems.append(f"checks[{i}].schema: {why}")
        if isinstance(check, ExpressionCheck):
            try:
                ast.parse(check.expr, mode="eval")
            except SyntaxError as exc:
                problems.append(f"checks[{i}].expr: not a Python expression ({exc.msg})")
    return problems


class Example(BaseModel):
    """A worked example: input files uploaded to the workspace root under the same names, the
    goal given to the agent, a known-good ``solution`` script and extra checks for this case."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    folder: Path
    goal: str = Field(min_length=1)
    files: tuple[str, ...] = Field(min_length=1)
    solution: str = "solution.py"
    outputs: tuple[str, ...] = Field(default=(), description="Files the solution writes.")
    checks: tuple[CheckSpec, ...] = Field(default=(), description="On top of the skill's.")

    @model_validator(mode="after")
    def _files_exist(self) -> Example:
        problems = [
            f"{field}: {why}"
            for field, names in (("files", self.files), ("solution", (self.solution,)))
            for name in names
            if (why := _relative_file(self.folder, name))
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def input_files(self) -> dict[str, bytes]:
        """The files to upload, keyed by their workspace-relative names."""
        return {name: (self.folder / name).read_bytes() for name in self.files}

    def solution_code(self) -> str:
        return (self.folder / self.solution).read_text(encoding="utf-8")


class Skill(BaseModel):
    """One validated skill. ``instructions`` is the markdown body; ``folder`` holds SKILL.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Lowercase letters, digits, hyphens; equals the folder name.")
    description: str = Field(description="What the skill does and when to use it (≤ 1024).")
    version: str = Field(description="Semantic version, e.g. 1.0.0.")
    inputs: dict[str, Any] = Field(description="JSON Schema (type object) of task.json.")
    defaults: dict[str, Any] = Field(default_factory=dict)
    checks: tuple[CheckSpec, ...] = ()
    sandbox: SandboxSpec = Field(default_factory=SandboxSpec, description="Requirements.")
    tools: tuple[str, ...] = ()
    examples: tuple[str, ...] = Field(default=(), description="Folders, relative to the skill.")
    license: str | None = None  # optional Agent Skills fields, kept for compatibility
    compatibility: str | None = Field(default=None, max_length=500)
    metadata: dict[str, str] = Field(default_factory=dict)
    instructions: str
    folder: Path

    @field_validator("name", "version", "description", "instructions", mode="before")
    @classmethod
    def _text(cls, value: object, info: ValidationInfo) -> str:
        expected, ok = _TEXT_RULES[str(info.field_name)]
        if not isinstance(value, str):  # YAML reads 1.0 as a float: say to quote it
            raise ValueError(f"expected {expected} as a string (quote it), got {value!r:.60}")
        if not ok(value.strip()):
            raise ValueError(f"expected {expected}, got {value.strip()!r:.80}")
        return value.strip()

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError("expected a JSON Schema with type: object (task.json is an object)")
        if why := _schema_problem(schema):
            raise ValueError(why)
        return schema

    @field_validator("sandbox")
    @classmethod
    def _sandbox(cls, spec: SandboxSpec) -> SandboxSpec:
        if "workspace_dir" in spec.model_fields_set:
            raise ValueError("workspace_dir is the caller's choice of host folder, not a skill's")
        return spec

    @field_validator("tools")
    @classmethod
    def _tools(cls, tools: tuple[str, ...]) -> tuple[str, ...]:
        bad = [tool for tool in tools if not _TOOL.fullmatch(tool)]
        if bad or len(set(tools)) != len(tools):
            raise ValueError(f"expected unique tool names like 'search' or 'db.query', got {bad}")
        return tools

    @model_validator(mode="after")
    def _against_folder(self) -> Skill:
        problems = _check_problems(self.checks, self.folder)
        if self.name != self.folder.name:
            problems.insert(
                0, f"name: {self.name!r} must equal the folder name {self.folder.name!r}"
            )
        known = self.inputs.get("properties", {})
        problems += [
            f"defaults.{key}: not a property of inputs ({', '.join(known)})"
            for key in self.defaults
            if known and key not in known
        ]
        partial = {**self.inputs, "required": []}  # defaults need not cover required inputs
        errors = jsonschema.validators.validator_for(partial)(partial).iter_errors(self.defaults)
        problems += [f"defaults.{_where(tuple(e.path))}: {e.message}" for e in errors if e.path]
        for i, example in enumerate(self.examples):
            if not (self.folder / example / "example.yaml").is_file():
                problems.append(f"examples[{i}]: no {example}/example.yaml in {self.folder}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def task_inputs(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``defaults`` overlaid with ``params``, validated against ``inputs`` (for task.json)."""
        merged = {**self.defaults, **(params or {})}
        errors = jsonschema.validators.validator_for(self.inputs)(self.inputs).iter_errors(merged)
        problems = [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors]
        if problems:
            raise ConfigError(f"inputs for skill {self.name!r}:\n  " + "\n  ".join(problems))
        return merged

    def sandbox_spec(self, base: SandboxSpec | None = None) -> SandboxSpec:
        """``base`` with this skill's requirements. A field ``base`` left at its default takes
        the skill's value; one it set explicitly keeps the larger value for limits in
        ``_MINIMUMS``, merges ``env`` (base wins per name) and is a conflict otherwise."""
        base = base or SandboxSpec()
        merged = base.model_dump()
        for field in sorted(self.sandbox.model_fields_set):
            mine, theirs = getattr(self.sandbox, field), getattr(base, field)
            if field not in base.model_fields_set:
                merged[field] = mine
            elif field in _MINIMUMS:
                merged[field] = max(mine, theirs)
            elif field == "env":
                merged[field] = {**mine, **theirs}
            elif mine != theirs:
                raise ConfigError(
                    f"skill {self.name!r} needs sandbox {field}={mine!r}, "
                    f"the task asks for {theirs!r}"
                )
        try:
            return SandboxSpec.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(f"skill {self.name!r} sandbox requirements: {exc}") from exc

    def load_examples(self) -> list[Example]:
        return [
            load_example(self.folder / name, skill_folder=self.folder) for name in self.examples
        ]


def _where(loc: tuple[int | str, ...]) -> str:
    """``('checks', 2, 'expression', 'expr')`` -> ``checks[2].expr`` (drops union tags)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (i and isinstance(loc[i - 1], int) and part in _CHECK_MODELS):
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
            owner, hidden = _CHECK_MODELS[str(loc[2])], set()
        known = [f.alias or name for name, f in owner.model_fields.items() if name not in hidden]
        return f"unknown field; expected one of: {', '.join(known)}"
    if kind == "union_tag_invalid":
        return f"unknown check kind {ctx['tag']!r}; expected one of: {', '.join(_CHECK_MODELS)}"
    if kind == "union_tag_not_found":
        return f"a check needs a 'kind', one of: {', '.join(_CHECK_MODELS)}"
    if kind == "missing":
        return "required field is missing"
    message = str(ctx["error"]) if kind in ("value_error", "assertion_error") else error["msg"]
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and kind != "value_error":
        message += f" (got {value!r:.60})"
    return message


def _invalid(file: Path, exc: ValidationError, model: type[BaseModel], hidden: set[str]) -> str:
    lines = []
    for error in exc.errors():
        where = _where(tuple(error["loc"]))
        for line in _explain(error, model, hidden).splitlines():
            # model-level problems already start with their own field path
            lines.append(f"{where}: {line}" if where else line)
    count = f"{len(lines)} problem{'' if len(lines) == 1 else 's'}"
    return f"{file}: invalid ({count}):\n  " + "\n  ".join(lines)


def _yaml(text: str, file: Path, first_line: int) -> dict[str, Any]:
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


def _front_matter(text: str, file: Path) -> tuple[dict[str, Any], str]:
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
    return _yaml("".join(lines[1:end]), file, first_line=2), "".join(lines[end + 1 :])


def load_skill(path: Path) -> Skill:
    """Load and validate one skill from its folder or its SKILL.md."""
    file = path if path.name == "SKILL.md" else path / "SKILL.md"
    if not file.is_file():
        raise SkillError(f"{file}: not found; a skill is a folder with a SKILL.md")
    front, body = _front_matter(file.read_text(encoding="utf-8"), file)
    hidden = {"folder", "instructions"}
    if clash := sorted(hidden & front.keys()):
        raise SkillError(f"{file}: {clash[0]}: reserved (it comes from the file, not the YAML)")
    try:
        # The real folder: an editable install links each file, and check runners refuse
        # check files that resolve outside the folder they were given.
        folder = file.resolve().parent
        skill = Skill.model_validate({**front, "instructions": body, "folder": folder})
    except ValidationError as exc:
        raise SkillError(_invalid(file, exc, Skill, hidden)) from exc
    skill.load_examples()  # an example that no longer matches its skill is the skill's bug
    return skill


def load_example(folder: Path, *, skill_folder: Path) -> Example:
    """Load ``folder/example.yaml``; pytest check files are relative to ``skill_folder``."""
    file = folder / "example.yaml"
    if not file.is_file():
        raise SkillError(f"{file}: not found")
    data = _yaml(file.read_text(encoding="utf-8"), file, first_line=1)
    hidden = {"name", "folder"}
    if clash := sorted(hidden & data.keys()):
        raise SkillError(f"{file}: {clash[0]}: reserved (it comes from the folder)")
    try:
        example = Example.model_validate({**data, "name": folder.name, "folder": folder})
    except ValidationError as exc:
        raise SkillError(_invalid(file, exc, Example, hidden)) from exc
    if problems := _check_problems(example.checks, skill_folder):
        raise SkillError(f"{file}: invalid:\n  " + "\n  ".join(problems))
    return example


def builtin_skills_dir() -> Path:
    """The folder of the skills shipped with execloop (package data of ``execloop.skills``)."""
    return Path(str(importlib.resources.files("execloop.skills")))


def _skill_folders(dirs: Sequence[Path]) -> list[Path]:
    folders = []
    for directory in dirs or (builtin_skills_dir(),):
        if not directory.is_dir():
            raise SkillError(f"{directory}: not a folder of skills")
        folders += sorted(p for p in directory.iterdir() if (p / "SKILL.md").is_file())
    return folders


def list_skills(*dirs: Path) -> list[Skill]:
    """Every skill in ``dirs`` (default: the built-in ones), sorted by name; a name found in
    an earlier folder shadows the same name in a later one, like ``PATH``."""
    found: dict[str, Skill] = {}
    for folder in _skill_folders(dirs):
        skill = load_skill(folder)
        found.setdefault(skill.name, skill)
    return sorted(found.values(), key=lambda skill: skill.name)


def find_skill(name: str, *dirs: Path) -> Skill:
    """The skill called ``name`` in ``dirs`` (default: the built-in ones)."""
    for directory in dirs or (builtin_skills_dir(),):
        if (directory / name / "SKILL.md").is_file():
            return load_skill(directory / name)
    available = sorted({folder.name for folder in _skill_folders(dirs)})
    raise SkillError(f"unknown skill {name!r}; available: {', '.join(available) or 'none'}")
