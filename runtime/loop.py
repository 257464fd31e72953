"""The code-execute-verify loop: one sub-agent, one task, exactly one ``Result``.

Each attempt: prompt (bounded, see prompts.py) → one script → a fresh sandbox with the inputs →
the task's checks, run by the runtime → on failure a compact report becomes the next prompt.
When every check passes, the outputs are kept on the host and re-checked before the task is
reported ``passed`` (kept_outputs.py). What surrounds the script in its sandbox is in
attempt_guards.py; what the attempts gathered, and the result made of it, in loop_state.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio

from execloop.errors import ConfigError, ExecloopError
from execloop.runtime import bounds
from execloop.runtime.attempt_guards import checkpoints_guard, exec_script, tool_bridge
from execloop.runtime.bridge import ToolRegistry, render_tool_api
from execloop.runtime.bridge.stubs import ToolDocs
from execloop.runtime.check_runner import OutputReader, run_checks
from execloop.runtime.checkpoints import TaskCheckpoints
from execloop.runtime.checks import CheckOutcome, CheckSpec, ExitStatusCheck
from execloop.runtime.classic import ClassicEstimate
from execloop.runtime.classic_prompt import ClassicPrompt
from execloop.runtime.host_workspace import HostWorkspace
from execloop.runtime.inputs import SCRIPT_NAME, Inputs, StagedInputs
from execloop.runtime.kept_outputs import (
    REVERIFY_FAILED,
    keep_outputs,
    move_outputs,
    outputs_folder,
    refused_outcomes,
    reverify_outputs,
)
from execloop.runtime.loop_state import LoopEvent, LoopState
from execloop.runtime.models.base import Message, Model, ModelReply, ModelRequest
from execloop.runtime.prompts import (
    SYSTEM_RULES,
    AttemptMemory,
    describe_checks,
    extract_script,
    failure_report,
)
from execloop.runtime.skills import Skill, resolve_skill
from execloop.runtime.task import AttemptRecord, ErrorKind, Result, Task, TaskStatus
from execloop.runtime.task_json import given_task_json, with_skill_defaults
from execloop.sandboxes import ExecResult, Sandbox, SandboxSpec, create_sandbox
from execloop.sandboxes.progress import ProgressEvent

__all__ = ["LoopEvent", "SubAgent"]

log = logging.getLogger("execloop.runtime.loop")


class SubAgent:
    """Runs one task to its one result. Never raises for a failed task or a provider outage:
    those are results (``failed``, ``budget_exhausted``, ``error``)."""

    def __init__(
        self,
        task: Task,
        *,
        model: Model,
        skill: Skill | None = None,
        sandbox_factory: Callable[[SandboxSpec], Sandbox] = create_sandbox,
        on_event: Callable[[LoopEvent], None] | None = None,
        registry: ToolRegistry | None = None,
        tool_call_budget: int = 1000,
        skill_dirs: Sequence[Path] = (),
        outputs_dir: Path | None = None,
        tool_docs: ToolDocs = "full",
        checkpoint_root: Path | None = None,
    ) -> None:
        if task.tools and registry is None:
            raise ConfigError(
                f"task {task.id} allows tools {list(task.tools)} but no ToolRegistry was given"
            )
        if skill is None and task.skill is not None:  # built-in names, then skill_dirs
            skill = resolve_skill(task.skill, skill_dirs=skill_dirs)
        if task.skill != (skill.name if skill else None):
            raise ConfigError(
                f"task {task.id} names skill {task.skill!r} but SubAgent was given "
                f"{skill.name if skill else None!r}: leave skill= out to resolve the task's"
            )
        self.task = task
        self.registry = registry
        self.tool_docs = tool_docs  # "summary": one line per tool in the prompt
        self.tool_call_budget = tool_call_budget
        # where a passed task's verified workspace is kept (created then); None: not kept
        self.outputs_dir = outputs_dir
        # where the task's checkpoint directory is made if its spec asks for one (a broker:
        # beside its database, so a resumed task finds it); None: a temporary folder
        self.checkpoint_root = checkpoint_root
        self._checkpoints: TaskCheckpoints | None = None
        self.model = model
        self.skill = skill
        self._factory = sandbox_factory
        self._on_event = on_event or (lambda event: None)
        self._streams = on_event is not None  # the script's progress is read only if seen
        self.spec = skill.sandbox_spec(task.sandbox) if skill else task.sandbox
        checks: list[CheckSpec] = [*(skill.checks if skill else ()), *task.checks]
        if not any(isinstance(check, ExitStatusCheck) for check in checks):
            checks.insert(0, ExitStatusCheck())  # a script that crashed never passes
        self.checks: tuple[CheckSpec, ...] = tuple(checks)
        self.check_root: Path | None = skill.folder if skill else None
        self.system = self._system_blocks()
        # The inputs are walked and checked once, here; a refusal ends the task before any
        # model call or sandbox (run() returns it as an error result).
        self.inputs = Inputs.collect(())
        self.refused: str | None = None
        self._task_json = with_skill_defaults(skill, task.inputs)  # its folder lives with self
        try:
            self.inputs = Inputs.collect(self._task_json.inputs)
            self.inputs.check_fits(self.spec)
            described = self.inputs.describe()
        except ConfigError as exc:
            self.refused, described = str(exc), "Input files: (refused)"
        self.task_text = "\n\n".join(
            [f"Task: {task.goal}", described, describe_checks(self.checks)]
        )
        # Older attempts are summarised in at most a fifth of the fixed prompt (and never more
        # than SUMMARY_TOKENS), so attempt 20's prompt stays within 1.25x of attempt 3's.
        # the request without memory (attempt 1's): its count sizes the memory, once
        self._bare = ModelRequest(
            system=self.system, messages=(Message(role="user", content=self.task_text),)
        )
        fixed = self._bare.prompt_tokens
        self.memory = AttemptMemory(summary_tokens=min(bounds.SUMMARY_TOKENS, fixed // 5))
        self._state = LoopState()
        self._staged = StagedInputs(None)  # set for the duration of run()

    def _system_blocks(self) -> tuple[str, ...]:
        blocks = [SYSTEM_RULES]
        if self.skill is not None:
            blocks.append(f"Skill `{self.skill.name}`:\n{self.skill.instructions.strip()}")
        if self.task.tools and self.registry is not None:
            tools = [self.registry.get(name) for name in self.task.tools]
            blocks.append(
                "Host tools, callable from the script as plain functions "
                "(`from execloop_tools import ...`; a refused or failed call raises "
                "execloop_tools.ToolError). Their results stay in the script: print only "
                "what the answer needs.\n" + render_tool_api(tools, docs=self.tool_docs)
            )
        return tuple(blocks)

    # -- the loop ----------------------------------------------------------------------------
    def preflight(self) -> None:
        """Refuse, before attempt 1, a task that can never pass: a skill task whose task.json
        is missing or lacks an input the skill requires, or breaks the skill's ``inputs``
        schema. Raises ``ConfigError`` naming the input or schema path; ``run`` makes it the
        task's ``error`` result without calling the model or starting a sandbox."""
        if self.skill is None:
            return
        self.skill.check_task_json(given_task_json(self.task.inputs))

    async def run(self) -> Result:
        started = time.monotonic()
        try:
            if self.refused is not None:  # inputs or workspace refused when collected
                raise ConfigError(self.refused)
            self.preflight()
            with anyio.move_on_after(self.task.budget.max_wall_time_s) as deadline:
                async with self._prepared():
                    status = await self._attempts()
            if deadline.cancelled_caught:
                status, error = TaskStatus.BUDGET_EXHAUSTED, "wall-time budget exhausted"
            else:
                error = None
        except ExecloopError as exc:  # refused before attempt 1, or infrastructure failed: data
            level = logging.INFO if isinstance(exc, ConfigError) else logging.WARNING
            log.log(level, "task %s ended in error: %s", self.task.id, exc)
            status, error = TaskStatus.ERROR, f"{type(exc).__name__}: {exc}"
            kind: ErrorKind | None = ErrorKind.of(exc)
        else:
            kind = ErrorKind.BUDGET if status is TaskStatus.BUDGET_EXHAUSTED else None
        if status is TaskStatus.BUDGET_EXHAUSTED and error is None:
            error = "token budget exhausted"
        if self._checkpoints is not None:  # the task has its result (a cancelled one has none)
            self._checkpoints.discard()
        result = self._result(status, error, kind, time.monotonic() - started)
        self._on_event(LoopEvent("finished", len(self._state.records), {"result": result}))
        return result

    @asynccontextmanager
    async def _prepared(self) -> AsyncIterator[None]:
        """The staged inputs every sandbox of this task receives, and the claim on a host
        workspace directory if the spec names one."""
        async with AsyncExitStack() as stack:
            self._checkpoints = TaskCheckpoints.open(
                self.spec, task_id=self.task.id, root=self.checkpoint_root
            )
            self.spec = self._checkpoints.spec
            if self.spec.workspace_dir is not None:
                claim = stack.enter_context(HostWorkspace.claim(self.spec.workspace_dir))
                claim.reserve(SCRIPT_NAME)
            self._staged = await stack.enter_async_context(self.inputs.staged())
            if self.spec.workspace_dir is not None:
                claim.refuse_overwriting_inputs(self.inputs, self._staged.folder)
            try:
                yield
            finally:
                self._staged = StagedInputs(None)

    async def _attempts(self) -> TaskStatus:
        for number in range(1, self.task.budget.max_attempts + 1):
            self._on_event(LoopEvent("attempt", number))
            if await self._attempt(number):
                return TaskStatus.PASSED
            if self._state.usage.total_tokens >= self.task.budget.max_tokens:
                return TaskStatus.BUDGET_EXHAUSTED
        return TaskStatus.FAILED

    def request(self, number: int) -> ModelRequest:
        """The prompt of attempt ``number``: stable prefix + task + bounded memory."""
        memory = self.memory.render(number)
        if not memory:
            return self._bare
        text = self.task_text + "\n\n" + memory
        return ModelRequest(system=self.system, messages=(Message(role="user", content=text),))

    async def _attempt(self, number: int) -> bool:
        state = self._state
        request = self.request(number)
        prompt_tokens = request.prompt_tokens  # the one count; a scripted model reads it too
        began = time.monotonic()
        # the workspace kept for re-verification, and the attempt's sandbox (closed early)
        async with outputs_folder() as outputs, AsyncExitStack() as sandbox_held:
            reply, started = await self._reply_beside_a_sandbox(request, sandbox_held)
            state.usage += reply.usage
            script = extract_script(reply)
            self._on_event(LoopEvent("reply", number, {"usage": reply.usage, "script": script}))
            if script is None:
                self._recorded(state.record(number, None, [], reply.usage, prompt_tokens, 0, began))
                self.memory.record(
                    script=None,
                    report=failure_report(None, []),
                    one_line=(f"attempt {number}: no script in the reply"),
                )
                return False
            if isinstance(started, Exception):
                raise started
            run, outcomes = await self._run_and_check(started, script, number, outputs)
            await sandbox_held.aclose()  # before re-verification: its fresh sandbox may need room
            note = ""
            if all(o.passed for o in outcomes):
                outcomes = await self._reverify(run, outputs)
                if not all(o.passed for o in outcomes):
                    note = REVERIFY_FAILED
                elif self.outputs_dir is not None and self._state.outputs_refused is None:
                    await anyio.to_thread.run_sync(move_outputs, outputs, self.outputs_dir)
        state.outcomes = outcomes
        self._recorded(
            state.record(number, run, outcomes, reply.usage, prompt_tokens, len(script), began)
        )
        passed = all(o.passed for o in outcomes)
        if not passed:
            failed = ", ".join(o.name for o in outcomes if not o.passed) or "none"
            self.memory.record(
                script=script,
                report=failure_report(run, outcomes, note=note),
                one_line=f"attempt {number}: exit {run.exit_reason.value}; failed: {failed}",
            )
        return passed

    async def _reply_beside_a_sandbox(
        self, request: ModelRequest, held: AsyncExitStack
    ) -> tuple[ModelReply, Sandbox | Exception]:
        """The model's reply; meanwhile the attempt's sandbox starts (held open by ``held``)
        and gets the inputs, so the model's latency hides the start. When the reply has no
        script, the sandbox is closed unused. A failed start is returned, to be raised once
        the reply's tokens are counted."""
        replies: list[ModelReply | Exception] = []

        async def ask() -> None:
            began = time.monotonic()
            try:
                replies.append(await self.model.complete(request))
            except Exception as exc:  # raised below as it is, not in an exception group
                replies.append(exc)
            self._state.model_s += time.monotonic() - began

        started: Sandbox | Exception
        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            began = time.monotonic()
            try:
                started = await held.enter_async_context(self._factory(self.spec))
                await self._staged.upload(started)
            except Exception as exc:  # raised by the caller if a script needs the sandbox
                started = exc
            self._state.sandbox_s += time.monotonic() - began
        if isinstance(replies[0], Exception):
            raise replies[0]
        return replies[0], started

    async def _run_and_check(
        self, sandbox: Sandbox, script: str, number: int, outputs: Path
    ) -> tuple[ExecResult, list[CheckOutcome]]:
        state = self._state
        state.outputs_refused = None
        began = time.monotonic()
        await sandbox.upload({SCRIPT_NAME: script})
        async with tool_bridge(
            sandbox,
            self.registry,
            allow=self.task.tools,
            call_budget=self.tool_call_budget,
        ) as bridge:
            run = await checkpoints_guard(
                self._checkpoints, lambda: exec_script(sandbox, self._progress_to(number))
            )
        if bridge is not None:
            state.tool_calls = list(bridge.trace)
            self._on_event(LoopEvent("tool_calls", number, {"records": state.tool_calls}))
        state.sandbox_s += time.monotonic() - began
        self._on_event(LoopEvent("ran", number, {"run": run}))
        checked = time.monotonic()
        reader = OutputReader(sandbox)  # result.json: fetched once, for checks and answer
        outcomes = await run_checks(
            self.checks,
            sandbox=sandbox,
            run=run,
            check_files_root=self.check_root,
            outputs=reader,
        )
        if self._checkpoints is not None and (over := self._checkpoints.check()):
            outcomes = [*outcomes, over]
        state.checks_s += time.monotonic() - checked
        self._on_event(LoopEvent("checked", number, {"outcomes": outcomes}))
        if run.exit_code is not None:  # the sandbox is alive: keep what it produced
            manifest = await sandbox.manifest(limit=bounds.ARTIFACTS_LISTED)
            state.artifacts = manifest.files
            state.artifacts_total = (manifest.total_files, manifest.total_bytes)
            state.answer = await reader.answer(run)
            if all(o.passed for o in outcomes):
                state.outputs_refused = await keep_outputs(
                    sandbox,
                    outputs,
                    inputs=self.inputs,
                    workspace=state.artifacts_total,
                    workspace_size=self.spec.workspace_size,
                )
        return run, outcomes

    def _progress_to(self, number: int) -> Callable[[ProgressEvent], None] | None:
        """Where attempt ``number``'s progress reports go: events, when someone listens (the
        script's output is streamed only then)."""
        if not self._streams:
            return None
        return lambda event: self._on_event(LoopEvent("progress", number, {"event": event}))

    def classic_estimate(self, final_answer: str) -> ClassicEstimate:
        """What the classic agent would have cost for the last attempt's calls: its own prompt
        (``task.classic_system`` or the classic system prompt, with the allowed tools' schemas),
        the goal as its user message, and each result as the text it would have read."""
        tools = [self.registry.get(name) for name in self.task.tools] if self.registry else []
        prompt = ClassicPrompt.for_tools(tools, system=self.task.classic_system)
        return self._state.classic_estimate(prompt, goal=self.task.goal, final_answer=final_answer)

    async def _reverify(self, run: ExecResult, outputs: Path) -> list[CheckOutcome]:
        state = self._state
        if state.outputs_refused is not None:
            return refused_outcomes(self.checks, state.outputs_refused)
        began = time.monotonic()
        try:
            outcomes, answer = await reverify_outputs(
                self.checks,
                outputs=outputs,
                staged=self._staged.folder,
                run=run,
                sandbox_factory=lambda: self._factory(self.spec),
                check_files_root=self.check_root,
            )
        finally:
            state.checks_s += time.monotonic() - began
        if answer is not None:
            state.answer = answer
        return outcomes

    # -- bookkeeping -----------------------------------------------------------------------
    def _recorded(self, record: AttemptRecord) -> None:
        self._on_event(LoopEvent("recorded", record.number, {"record": record}))

    def _result(
        self, status: TaskStatus, error: str | None, kind: ErrorKind | None, total_s: float
    ) -> Result:
        return self._state.result(
            task_id=self.task.id,
            status=status,
            error=error,
            kind=kind,
            total_s=total_s,
            model=self.model,
            classic=self.classic_estimate(self._state.answer),
        )
