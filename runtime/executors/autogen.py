"""An AutoGen ``CodeExecutor`` (autogen-core 0.7) that runs Python blocks in one execloop
sandbox, so ``CodeExecutorAgent(code_executor=ExecloopCodeExecutor())`` and
``PythonCodeExecutionTool`` run their code isolated.

The sandbox is stateful: variables live from one ``execute_code_blocks`` to the next until
``restart()`` or ``stop()``. Blocks run in order and the first that fails stops the rest, as in
AutoGen's own executors; a block in another language is refused with exit code 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pydantic import BaseModel, Field

from execloop.runtime import bounds
from execloop.runtime.executors.session import (
    OUTPUT_CHARS,
    SandboxSession,
    check_output_chars,
    exit_code,
    missing_extra,
    render,
)
from execloop.sandboxes import ExecResult, SandboxSpec

try:
    from autogen_core import CancellationToken, Component
    from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult
except ModuleNotFoundError as exc:
    raise missing_extra(exc, extra="autogen") from exc

__all__ = ["ExecloopCodeExecutor", "ExecloopCodeExecutorConfig", "ExecloopCodeResult"]

PYTHON_LANGUAGES = frozenset({"python", "python3", "py"})


@dataclass
class ExecloopCodeResult(CodeResult):
    """AutoGen's ``CodeResult`` plus the ``ExecResult`` of each block that ran."""

    results: list[ExecResult] = field(default_factory=list)


class ExecloopCodeExecutorConfig(BaseModel):
    """What ``dump_component()`` records: the sandbox spec's fields and the output bound."""

    spec: dict[str, Any] = Field(default_factory=dict)
    max_output_chars: int = OUTPUT_CHARS


class ExecloopCodeExecutor(CodeExecutor, Component[ExecloopCodeExecutorConfig]):
    """Runs ``python`` code blocks in one stateful execloop sandbox (``spec`` picks the
    backend and limits; the sandbox starts on ``start()`` or the first block)."""

    component_config_schema = ExecloopCodeExecutorConfig
    component_provider_override = "execloop.runtime.executors.autogen.ExecloopCodeExecutor"
    component_type: ClassVar[str] = "code_executor"

    def __init__(
        self,
        *,
        spec: SandboxSpec | Mapping[str, Any] | None = None,
        max_output_chars: int = OUTPUT_CHARS,
    ) -> None:
        self._session = SandboxSession(spec=spec)
        self._max_output_chars = check_output_chars(max_output_chars)

    @property
    def session(self) -> SandboxSession:
        return self._session

    async def execute_code_blocks(
        self, code_blocks: list[CodeBlock], cancellation_token: CancellationToken
    ) -> ExecloopCodeResult:
        outputs: list[str] = []
        results: list[ExecResult] = []
        status = 0
        for block in code_blocks:
            if block.language.strip().lower() not in PYTHON_LANGUAGES:
                outputs.append(
                    f"[execloop: unsupported language {block.language!r}; "
                    "this executor runs python code blocks only]"
                )
                status = 1
                break
            # AutoGen cancels through the token; cancelling mid-exec ends the sandbox, and the
            # next block starts a new one (its output says so).
            task = asyncio.ensure_future(self._session.exec(block.code))
            cancellation_token.link_future(task)
            result, note = await task
            results.append(result)
            outputs.append(render(result, note=note, limit=self._max_output_chars))
            status = exit_code(result)
            if status != 0:
                break
        output = bounds.middle("\n".join(outputs), self._max_output_chars)
        return ExecloopCodeResult(exit_code=status, output=output, results=results)

    async def start(self) -> None:
        await self._session.start()

    async def stop(self) -> None:
        await self._session.aclose()

    async def restart(self) -> None:
        """A fresh sandbox: every variable of the old one is gone."""
        await self.stop()
        await self.start()

    def _to_config(self) -> ExecloopCodeExecutorConfig:
        return ExecloopCodeExecutorConfig(
            spec=self._session.spec.model_dump(mode="json", exclude_defaults=True),
            max_output_chars=self._max_output_chars,
        )

    @classmethod
    def _from_config(cls, config: ExecloopCodeExecutorConfig) -> Self:
        return cls(spec=config.spec, max_output_chars=config.max_output_chars)
