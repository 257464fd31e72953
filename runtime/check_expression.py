"""Expression checks (``result["loss_final"] < result["loss_initial"]``) with RestrictedPython.

The expression comes from the task (trusted); ``result`` comes from the agent (untrusted).
RestrictedPython limits *what* code may reach (no imports, no ``_``-names, guarded attribute,
item and iteration access), not *how much* memory or time it uses: ``[0] * result["n"]`` or
``10 ** result["n"]`` would take the host down. A worker thread cannot be stopped and big-int
arithmetic holds the GIL, so ``evaluate_bounded`` runs this module's source as a child process
(``python -I -c``) that caps its own address space and CPU time *before* it reads ``result``,
and the host kills it at a wall-clock deadline. The child imports nothing heavier than
RestrictedPython and anyio, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import ast
import builtins
import functools
import json
import math
import resource
import signal
import subprocess
import sys
from pathlib import Path
from types import CodeType
from typing import Any

import anyio
from RestrictedPython.compile import compile_restricted_eval
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
    safer_getattr,
)

__all__ = [
    "EXPRESSION_MEMORY_BYTES",
    "EXPRESSION_TIMEOUT_S",
    "compile_expression",
    "evaluate",
    "evaluate_bounded",
]

EXPRESSION_TIMEOUT_S = 5.0
EXPRESSION_MEMORY_BYTES = 256 * 1024**2
_STARTUP_S = 5.0  # a loaded host may be slow to start the child; not part of the CPU budget
_MAX_REPLY = 64 * 1024

_EXTRA = (
    "len min max sum abs round all any sorted set dict list tuple int float str bool isinstance"
)
_DROPPED = {"__build_class__", "_getattr_", "setattr", "delattr"}  # nothing to define or mutate
_BUILTINS: dict[str, Any] = {
    **{name: value for name, value in safe_builtins.items() if name not in _DROPPED},
    **{name: getattr(builtins, name) for name in _EXTRA.split()},
}


def _apply(function: Any, *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)  # calls with * / ** arguments go through this guard


def _globals(result: object) -> dict[str, Any]:
    return {
        "__builtins__": _BUILTINS,
        "_apply_": _apply,
        "_getattr_": safer_getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "result": result,
    }


def compile_expression(expr: str) -> CodeType:
    """``expr`` compiled under RestrictedPython's policy; ``ValueError`` says why it cannot be
    (a syntax error, an ``_``-name, a statement). Tasks call it when they are built, so a check
    that could never pass is refused before any attempt runs."""
    try:
        compiled = compile_restricted_eval(expr, "<check>")
    except (SyntaxError, ValueError) as exc:  # raised by compile() past RestrictedPython's own
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if compiled.errors or compiled.code is None:
        raise ValueError("; ".join(compiled.errors) or "it does not compile")
    code: CodeType = compiled.code
    return code


def evaluate(expr: str, result: object) -> tuple[bool, str]:
    """In-process, unbounded evaluation: ``(passed, reason)``; never raises for the expression.

    Only the child process calls this with untrusted ``result`` (see ``evaluate_bounded``).
    """
    try:
        code = compile_expression(expr)
    except ValueError as exc:
        return False, f"refused: {exc}"
    try:
        passed = bool(eval(code, _globals(result)))
    except MemoryError:
        return False, "MemoryError: the expression needed more memory than checks may use"
    except KeyError as exc:
        known = ", ".join(map(str, list(result)[:20])) if isinstance(result, dict) else ""
        return False, f"KeyError: {exc}" + (f" (result has keys: {known})" if known else "")
    except Exception as exc:  # the expression's own error is the check's reason
        return False, f"{type(exc).__name__}: {exc}"
    return passed, "true" if passed else "false" + _values(expr, result)


def _values(expr: str, result: object) -> str:
    """``: result['a']=1, result['b']=2`` for the constant lookups the expression makes."""
    shown: dict[str, str] = {}
    for node in ast.walk(ast.parse(expr, mode="eval")):
        found, value = _lookup(node, result)
        if found and len(shown) < 4:
            text = repr(value)
            shown.setdefault(ast.unparse(node), text if len(text) <= 60 else text[:59] + "…")
    return (": " + ", ".join(f"{k}={v}" for k, v in shown.items())) if shown else ""


def _lookup(node: ast.AST, result: object) -> tuple[bool, object]:
    if isinstance(node, ast.Name) and node.id == "result":
        return False, result  # the bare name is not worth showing
    if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)):
        return False, None
    inner = node.value
    if isinstance(inner, ast.Name) and inner.id == "result":
        container: object = result
    else:
        found, container = _lookup(inner, result)
        if not found:
            return False, None
    try:
        return True, container[node.slice.value]  # type: ignore[index]
    except (LookupError, TypeError):
        return False, None


async def evaluate_bounded(
    expr: str,
    document: bytes,
    *,
    timeout_s: float = EXPRESSION_TIMEOUT_S,
    memory_bytes: int = EXPRESSION_MEMORY_BYTES,
) -> tuple[bool, str]:
    """Evaluate ``expr`` with ``result`` = the JSON ``document``, in a capped child process."""
    command = [sys.executable, "-I", "-B", "-c", _child_source()]
    command += [str(memory_bytes), str(math.ceil(timeout_s))]
    payload = json.dumps(expr).encode() + b"\n" + document
    reply = bytearray()
    try:
        pipe = subprocess.PIPE
        process = await anyio.open_process(
            command, stdin=pipe, stdout=pipe, stderr=subprocess.DEVNULL, env={}
        )
    except OSError as exc:  # the host is out of processes or memory: a failed check, not a crash
        return False, f"could not start the expression evaluator: {exc}"
    async with process:
        assert process.stdin is not None and process.stdout is not None
        with anyio.move_on_after(timeout_s + _STARTUP_S) as deadline:
            try:
                await process.stdin.send(payload)
                await process.stdin.aclose()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the child died early; its exit status says why
            async for chunk in process.stdout:
                reply += chunk[: _MAX_REPLY - len(reply)]
            await process.wait()
        if deadline.cancelled_caught:
            process.kill()
    code = process.returncode
    if deadline.cancelled_caught or code in (-signal.SIGXCPU, -signal.SIGKILL):
        return False, f"the expression did not finish within {timeout_s:g} s"
    try:
        verdict = json.loads(reply)
        return bool(verdict["passed"]), str(verdict["reason"])
    except (ValueError, KeyError, TypeError):
        return False, f"the expression evaluator failed (exit status {code})"


@functools.cache
def _child_source() -> str:
    # Sent with -c rather than run by path: a re-install or upgrade of the package while the
    # host runs cannot break (or swap) the evaluator mid-flight.
    return Path(__file__).read_text(encoding="utf-8")


def _child(argv: list[str]) -> None:
    """Cap this process, then read ``expr`` (a JSON line) and the document from stdin."""
    memory, cpu = int(argv[0]), int(argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL after
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        first, _, document = sys.stdin.buffer.read().partition(b"\n")
        expr = json.loads(first)
        result = json.loads(document)
    except MemoryError:
        passed, reason = False, "the result is too large to evaluate within the memory limit"
    except (ValueError, RecursionError) as exc:
        passed, reason = False, f"the result is not valid JSON: {exc}"
    else:
        passed, reason = evaluate(expr, result)
    sys.stdout.write(json.dumps({"passed": passed, "reason": reason[:2000]}))


if __name__ == "__main__":
    _child(sys.argv[1:])
