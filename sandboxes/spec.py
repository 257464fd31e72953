"""The frozen description of a sandbox: what runs, with which limits.

One spec type serves every backend so that pools (keyed by ``spec.key()``) and the broker can
treat sandboxes alike; a backend ignores nothing silently — it refuses fields it cannot honour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from execloop.errors import ConfigError

__all__ = [
    "Backend",
    "ByteCount",
    "CHECKPOINT_ENV",
    "DEFAULT_BACKEND",
    "GUEST_CHECKPOINTS",
    "GpuRequest",
    "ISOLATING_BACKENDS",
    "IsolatingBackend",
    "Placement",
    "RESERVED_LABEL_PREFIXES",
    "SANDBOX_UID",
    "SandboxSpec",
    "coerce_spec",
    "parse_bytes",
    "parse_gpus",
]

Backend = Literal["docker", "jupyter", "local", "restricted"]
# The backends that are a security boundary (restricted is not): what a server may offer
# untrusted callers.
IsolatingBackend = Literal["docker", "jupyter", "local"]
ISOLATING_BACKENDS: tuple[str, ...] = get_args(IsolatingBackend)
DEFAULT_BACKEND: IsolatingBackend = "docker"
Placement = Literal["docker", "bubblewrap"]
# What ``gpus`` holds: none (``()``), pinned ids, a count, or every GPU.
GpuRequest = tuple[str, ...] | Annotated[int, Field(ge=1, le=1024)] | Literal["all"]
_GPU_ID = re.compile(r"[0-9]+|GPU-[0-9a-fA-F-]+|MIG-[0-9a-zA-Z/-]+")

# Every backend runs the untrusted code as this uid (never root), inside and outside.
SANDBOX_UID = 1000
# Where a checkpoint directory is inside every sandbox, and the variable that says so.
GUEST_CHECKPOINTS = "/checkpoints"
CHECKPOINT_ENV = "EXECLOOP_CHECKPOINT_DIR"

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Docker's label keys: alphanumeric, with periods, underscores, slashes and hyphens inside.
_LABEL_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9])?")
# Namespaces a user label may not take: execloop's own (the reaper and janitor key on them)
# and the ones Docker reserves for itself.
RESERVED_LABEL_PREFIXES = ("org.execloop.", "com.docker.", "io.docker.", "org.dockerproject.")
# Docker's reference grammar (distribution/reference): [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST].
_DOMAIN = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def parse_gpus(value: object) -> object:
    """Docker's ``--gpus`` spellings: ``all``, a count (``2``), ``device=0,GPU-...`` (pinned
    ids; ``0,1`` too); anything else (a tuple of ids, an int) is left to validation."""
    if isinstance(value, bool):
        raise ValueError("gpus is 'all', a count or device ids, not a boolean")
    if isinstance(value, str):
        text = value.strip().strip('"')
        if text in ("all", ""):
            return text or ()
        if not text.isdigit():
            ids = text.removeprefix("device=")
            return tuple(part.strip() for part in ids.split(",") if part.strip())
        value = int(text)  # as for docker run --gpus, a bare number is a count
    if isinstance(value, int) and value < 1:
        raise ValueError(
            f"a GPU count is at least 1, got {value}; pin GPU 0 with 'device=0' or ('0',), "
            "or leave gpus empty for none"
        )
    return tuple(value) if isinstance(value, list) else value
    ids = text.removeprefix("device=")
    return tuple(part.strip() for part in ids.split(",") if part.strip())


def parse_bytes(value: object) -> int:
    """Parse ``512m``, ``2g``, ``1.5GiB``, ``1048576`` (binary units) into a byte count."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512m or 2g, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number, unit = match.groups()
            return int(float(number) * _UNITS[unit.lower()])
    raise ValueError(f"expected a size such as 512m, 2g or a byte count, got {value!r}")


ByteCount = Annotated[int, BeforeValidator(parse_bytes)]


class SandboxSpec(BaseModel):
    """Limits and placement of one sandbox. Sizes accept ``512m``/``2g`` or byte counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Backend = DEFAULT_BACKEND
    placement: Placement = Field(
        default="docker",
        description="Where a jupyter kernel runs: a Docker container or a bubblewrap process.",
    )
    image: str | None = Field(
        default=None, description="Image to run; None means execloop's own python image."
    )
    cpus: float = Field(default=1.0, gt=0, le=512, allow_inf_nan=False)
    memory: ByteCount = Field(default=1024**3, ge=16 * 1024**2)
    pids: int = Field(default=256, ge=16, le=65536)
    timeout_s: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, description="Default per-exec wall-clock limit."
    )
    workspace_size: ByteCount = Field(default=512 * 1024**2, ge=1024**2)
    workspace_dir: Path | None = Field(
        default=None,
        description="Host directory bind-mounted as the workspace instead of a sized tmpfs.",
    )
    checkpoint_dir: Path | None = Field(
        default=None,
        description="Host directory bound read-write at /checkpoints (EXECLOOP_CHECKPOINT_DIR "
        "inside): it outlives the sandbox, so a killed run resumes. The runtime sets it per "
        "task when checkpoint_size is given.",
    )
    checkpoint_size: ByteCount | None = Field(
        default=None,
        ge=1024**2,
        description="Ask the task runtime for a per-task checkpoint directory holding at "
        "most this much (watched while a run runs); None: none.",
    )
    tmp_size: ByteCount = Field(default=64 * 1024**2, ge=1024**2)
    max_output_bytes: ByteCount = Field(
        default=1024**2, ge=1024, description="Output kept per stream and exec (head + tail)."
    )
    output_limit_bytes: ByteCount = Field(
        default=64 * 1024**2, ge=1024, description="Output after which an exec is stopped."
    )
    keep_background_processes: bool = Field(
        default=False,
        description="Keep processes a script leaves running; by default they die with the exec.",
    )
    env: dict[str, str] = Field(default_factory=dict)
    gpus: Annotated[GpuRequest, BeforeValidator(parse_gpus)] = Field(
        default=(),
        description="GPUs (docker only): 'all', a count, or device ids/UUIDs to pin "
        "(('0',), 'device=0,GPU-...'); empty means no GPU.",
    )
    runtime: str | None = Field(default=None, description="OCI runtime, e.g. 'runsc' (gVisor).")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels put on the sandbox's container beside execloop's own (docker, "
        "jupyter on docker).",
    )
    start_timeout_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [name for name in env if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(
                f"invalid environment variable names {bad}: use [A-Za-z_][A-Za-z0-9_]*"
            )
        return env

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not _LABEL_KEY.fullmatch(key):
                raise ValueError(
                    f"invalid label key {key!r}: use letters, digits, '.', '_', '/' and '-', "
                    "starting and ending with a letter or digit (e.g. com.example.team)"
                )
            reserved = next((p for p in RESERVED_LABEL_PREFIXES if key.startswith(p)), None)
            if reserved is not None:
                raise ValueError(
                    f"label {key!r} is in the reserved namespace {reserved}*; "
                    "choose a key under your own domain (e.g. com.example.team)"
                )
            if "\x00" in value:
                raise ValueError(f"label {key!r} has a NUL character in its value")
        return labels

    @field_validator("image")
    @classmethod
    def _image_reference(cls, image: str | None) -> str | None:
        if image is not None and not _IMAGE_REFERENCE.fullmatch(image):
            raise ValueError(
                f"{image!r} is not an image reference; use NAME[:TAG] or NAME@DIGEST, "
                "e.g. python:3.11-slim (lower-case name)"
            )
        return image

    @field_validator("gpus")
    @classmethod
    def _gpu_ids(cls, gpus: GpuRequest) -> GpuRequest:
        if isinstance(gpus, tuple):
            for gpu in gpus:
                if not _GPU_ID.fullmatch(gpu):
                    raise ValueError(
                        f"GPU id {gpu!r} is neither an index nor a GPU/MIG UUID; for every GPU "
                        "use gpus='all', for a number of them gpus=2"
                    )
        return gpus

    @field_validator("workspace_dir", "checkpoint_dir")
    @classmethod
    def _host_dir_exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None and not path.is_dir():
            raise ValueError(
                f"{info.field_name} {path} is not an existing directory; create it first"
            )
        return path.resolve() if path is not None else None

    @model_validator(mode="after")
    def _limits_consistent(self) -> SandboxSpec:
        if self.output_limit_bytes < self.max_output_bytes:
            raise ValueError("output_limit_bytes must be at least max_output_bytes")
        return self

    def key(self) -> str:
        """A stable string identifying this spec (pools key on it)."""
        return self.model_dump_json()


def coerce_spec(spec: object) -> SandboxSpec:
    """``spec`` as a ``SandboxSpec``: None is the default, a mapping is validated into one;
    anything invalid is a ``ConfigError`` naming each bad field."""
    if spec is None:
        return SandboxSpec()
    if isinstance(spec, SandboxSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"spec must be a SandboxSpec or a dict of its fields, not {type(spec).__name__}"
        )
    try:
        return SandboxSpec.model_validate(dict(spec))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'spec'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(f"invalid sandbox spec: {problems}") from None
