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

import importlib.resources
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
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
from execloop.images.names import same_packages
from execloop.runtime.checks import CheckSpec, JsonSchemaCheck, PytestCheck
from execloop.runtime.skill_files import (
    decode_python,
    field_path,
    front_matter,
    invalid,
    read_text,
    yaml_fields,
)
from execloop.sandboxes.spec import SandboxSpec

__all__ = [
    "Example",
    "Skill",
    "TASK_JSON",
    "builtin_skills_dir",
    "find_skill",
    "list_skills",
    "load_example",
    "load_skill",
    "resolve_skill",
    "scan_skills",
]

_NAME = re.compile(r"(?=.{1,64}$)[a-z0-9]+(-[a-z0-9]+)*")
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
)
_TOOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
# What each text field of the front matter must be: (what is expected, test).
_TEXT_RULES: dict[str, tuple[str, Callable[[str], object]]] = {
    "name": ("lowercase letters, digits and single hyphens (≤ 64)", _NAME.fullmatch),
    "version": ("a semantic version such as 1.0.0", _SEMVER.fullmatch),
    "description": ("1 to 1024 characters", lambda text: 0 < len(text) <= 1024),
    "instructions": ("markdown instructions after the front matter", bool),
}
# Resource limits a skill states as minimums: merging keeps the larger of skill and base.
_MINIMUMS = ("cpus", "memory", "pids", "timeout_s", "workspace_size", "tmp_size", "start_timeout_s")
TASK_JSON = "task.json"  # the file a skill's scripts read their inputs from


def _schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (checked against its own meta-schema)."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = ".".join(str(part) for part in exc.path)
        return f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}"
    return None


def _relative_file(folder: Path, name: str, *, or_folder: bool = False) -> str | None:
    """Why ``name`` is not an existing file (or, with ``or_folder``, folder) inside ``folder``."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        return f"{name!r} must be a path relative to {folder}, without '..'"
    found = (folder / pure).is_file() or (or_folder and (folder / pure).is_dir())
    return (
        None
        if found
        else f"{'file or folder' if or_folder else 'file'} {name!r} not found in {folder}"
    )


def _check_problems(checks: Sequence[Any], skill_folder: Path) -> list[str]:
    """What pydantic cannot see in checks: files on disk, schema validity."""
    problems = []
    for i, check in enumerate(checks):
        if isinstance(check, PytestCheck) and (why := _relative_file(skill_folder, check.file)):
            problems.append(f"checks[{i}].file: pytest {why}")
        if isinstance(check, JsonSchemaCheck) and (why := _schema_problem(check.json_schema)):
            problems.append(f"checks[{i}].schema: {why}")
    return problems


class Example(BaseModel):
    """A worked example: input files (or folders, e.g. a saved model) uploaded to the workspace
    root under the same names, the goal given to the agent, a known-good ``solution`` script and
    extra checks for this case."""

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
            f"files: {why}"
            for name in self.files
            if (why := _relative_file(self.folder, name, or_folder=True))
        ]
        if why := _relative_file(self.folder, self.solution):
            problems.append(f"solution: {why}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def input_files(self) -> dict[str, bytes]:
        """The files to upload, keyed by their workspace-relative names (a folder's files as
        ``folder/...``)."""
        found: dict[str, bytes] = {}
        for name in self.files:
            path = self.folder / name
            inside = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            found |= {str(p.relative_to(self.folder)): p.read_bytes() for p in inside}
        return found

    def solution_code(self) -> str:
        """The solution's source, decoded as Python decodes it (PEP 263)."""
        return decode_python(self.folder / self.solution)


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
        problems += [f"defaults.{field_path(tuple(e.path))}: {e.message}" for e in errors if e.path]
        for i, example in enumerate(self.examples):
            if not (self.folder / example / "example.yaml").is_file():
                problems.append(f"examples[{i}]: no {example}/example.yaml in {self.folder}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def task_inputs(
        self, params: Mapping[str, Any] | None = None, *, source: Path | None = None
    ) -> dict[str, Any]:
        """``defaults`` overlaid with ``params``, validated against ``inputs``: the one merge
        that makes a task.json (``source``: the file ``params`` came from, for the error)."""
        merged = {**self.defaults, **(params or {})}
        if problems := self._input_problems(merged):
            where = (
                f"inputs for skill {self.name!r}"
                if source is None
                else f"{source} breaks the inputs schema of skill {self.name!r}"
            )
            raise ConfigError(f"{where}: " + "; ".join(problems))
        return merged

    def _input_problems(self, merged: Mapping[str, Any]) -> list[str]:
        errors = jsonschema.validators.validator_for(self.inputs)(self.inputs).iter_errors(merged)
        return [f"{field_path(tuple(e.path)) or '(root)'}: {e.message}" for e in errors]

    def check_task_json(self, path: Path | None) -> dict[str, Any]:
        """The inputs a task gives this skill: ``path`` is its task.json (None: it has none),
        over ``defaults``. A ``ConfigError`` names each required input that is missing and each
        schema path that is broken, so a task that can never pass is refused before it runs."""
        if path is None:
            missing = [
                name for name in self.inputs.get("required", ()) if name not in self.defaults
            ]
            if missing:
                raise ConfigError(
                    f"skill {self.name!r} needs the input(s) {', '.join(missing)}: add a "
                    f"{TASK_JSON} file giving them to the task's inputs (its inputs schema "
                    "describes that file; `execloop skills show` lists the inputs)"
                )
            return self.task_inputs()
        text = read_text(path, ConfigError)
        try:
            params = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: must be a JSON object, got {type(params).__name__}")
        return self.task_inputs(params, source=path)

    def sandbox_spec(self, base: SandboxSpec | None = None) -> SandboxSpec:
        """``base`` with this skill's requirements. A field ``base`` left at its default takes
        the skill's value; one it set explicitly keeps the larger value for limits in
        ``_MINIMUMS``, merges ``env`` (base wins per name), keeps an ``image`` with the same
        packages (``same_packages``) and is a conflict otherwise."""
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
            elif field == "image" and same_packages(theirs, mine):
                merged[field] = theirs  # e.g. execloop/train-cpu where execloop/train is named
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


def load_skill(path: Path) -> Skill:
    """Load and validate one skill from its folder or its SKILL.md."""
    file = path if path.name == "SKILL.md" else path / "SKILL.md"
    if not file.is_file():
        raise SkillError(f"{file}: not found; a skill is a folder with a SKILL.md")
    front, body = front_matter(read_text(file), file)
    hidden = {"folder", "instructions"}
    if clash := sorted(hidden & front.keys()):
        raise SkillError(f"{file}: {clash[0]}: reserved (it comes from the file, not the YAML)")
    try:
        # The real folder: an editable install links each file, and check runners refuse
        # check files that resolve outside the folder they were given.
        folder = file.resolve().parent
        skill = Skill.model_validate({**front, "instructions": body, "folder": folder})
    except ValidationError as exc:
        raise SkillError(invalid(file, exc, Skill, hidden)) from exc
    skill.load_examples()  # an example that no longer matches its skill is the skill's bug
    return skill


def load_example(folder: Path, *, skill_folder: Path) -> Example:
    """Load ``folder/example.yaml``; pytest check files are relative to ``skill_folder``."""
    file = folder / "example.yaml"
    if not file.is_file():
        raise SkillError(f"{file}: not found")
    data = yaml_fields(read_text(file), file, first_line=1)
    hidden = {"name", "folder"}
    if clash := sorted(hidden & data.keys()):
        raise SkillError(f"{file}: {clash[0]}: reserved (it comes from the folder)")
    try:
        example = Example.model_validate({**data, "name": folder.name, "folder": folder})
    except ValidationError as exc:
        raise SkillError(invalid(file, exc, Example, hidden)) from exc
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


def scan_skills(*dirs: Path) -> tuple[list[Skill], list[SkillError]]:
    """Every good skill in ``dirs`` (default: the built-in ones), sorted by name, and the error
    of each broken one; a name found in an earlier folder shadows the same name in a later one,
    like ``PATH``."""
    found: dict[str, Skill] = {}
    broken: list[SkillError] = []
    for folder in _skill_folders(dirs):
        try:
            skill = load_skill(folder)
        except SkillError as exc:
            broken.append(exc)
            continue
        found.setdefault(skill.name, skill)
    return sorted(found.values(), key=lambda skill: skill.name), broken


def list_skills(*dirs: Path) -> list[Skill]:
    """``scan_skills``' good skills; the first broken one raises its ``SkillError``."""
    found, broken = scan_skills(*dirs)
    if broken:
        raise broken[0]
    return found


def find_skill(name: str, *dirs: Path) -> Skill:
    """The skill called ``name`` in ``dirs`` (default: the built-in ones)."""
    for directory in dirs or (builtin_skills_dir(),):
        if (directory / name / "SKILL.md").is_file():
            return load_skill(directory / name)
    available = sorted({folder.name for folder in _skill_folders(dirs)})
    raise SkillError(f"unknown skill {name!r}; available: {', '.join(available) or 'none'}")


def resolve_skill(name: str, *, skill_dirs: Sequence[Path] = ()) -> Skill:
    """The skill a task names (``Task.skill``): the built-in ones first, then each folder of
    ``skill_dirs`` in order. The one resolver of SubAgent, Broker and CLI; an unknown name
    raises ``SkillError`` listing the known ones."""
    for directory in skill_dirs:
        if not Path(directory).is_dir():
            raise SkillError(f"{directory}: not a folder of skills (given in skill_dirs)")
    return find_skill(name, builtin_skills_dir(), *map(Path, skill_dirs))
