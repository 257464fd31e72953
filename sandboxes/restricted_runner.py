"""The helper protocol with RestrictedPython's compiler and guards (the restricted backend's child).

This is NOT a security boundary. RestrictedPython rewrites code so that names and attributes
starting with ``_`` are refused at compile time and attribute, item and iteration access go
through guards at run time; it keeps honest, trusted code (check expressions, glue) from
wandering off by mistake. Its own README says it is not a sandbox, and the code runs in a
plain host process as the host user: use the ``docker`` or ``local`` backend for untrusted code.

What the code gets: RestrictedPython's ``safe_builtins`` plus a few harmless ones (``sum``,
``sorted``...), ``print`` to stdout, ``open`` only for paths that resolve inside the workspace,
and ``import`` only of ``ALLOWED_MODULES`` (and their submodules). A module attribute that is
itself another module (``datetime.sys``) is refused as well, or the allowlist would leak.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import operator
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
    safer_getattr,
)

if TYPE_CHECKING or __package__:
    from execloop.sandboxes.guest import session, startup
else:  # run as a file by the backend: importing the execloop package would cost ~0.5 s
    from guest import session, startup

    del sys.path[0]  # this folder: none of its modules may shadow an allowed import

__all__ = ["ALLOWED_MODULES", "RestrictedSession", "main"]

ALLOWED_MODULES = frozenset(
    {
        "collections",
        "datetime",
        "decimal",
        "execloop_progress",  # execloop's own (json lines on stdout), shipped by the host
        "fractions",
        "functools",
        "itertools",
        "json",
        "math",
        "random",
        "re",
        "statistics",
        "string",
    }
)
_EXTRA_BUILTINS = [
    "all",
    "any",
    "bytes",
    "dict",
    "enumerate",
    "filter",
    "frozenset",
    "iter",
    "list",
    "map",
    "max",
    "min",
    "next",
    "reversed",
    "set",
    "sorted",
    "sum",
    "tuple",
    "zip",
]
_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}


_MISSING = object()
_safer_getattr: Callable[..., Any] = safer_getattr  # untyped upstream


def _allowed(module_name: str) -> bool:
    return module_name.partition(".")[0] in ALLOWED_MODULES


def _checked_module_value(value: Any, where: str) -> Any:
    if isinstance(value, ModuleType) and not _allowed(value.__name__):
        raise ImportError(f"{where} is the module {value.__name__!r}, which is not allowed here")
    return value


def _guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``safer_getattr`` (no ``_`` names, no ``str.format``) that also refuses leaked modules."""
    if default:
        value = _safer_getattr(obj, name, default[0])
    else:
        value = _safer_getattr(obj, name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")
    return _checked_module_value(value, f"attribute {name!r}")


def _guarded_import(
    name: str,
    globals: Mapping[str, Any] | None = None,
    locals: Mapping[str, Any] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> ModuleType:
    if level != 0 or not _allowed(name):
        raise ImportError(
            f"import of {name!r} is not allowed in the restricted backend; allowed: "
            f"{', '.join(sorted(ALLOWED_MODULES))} (use backend='docker' or 'local' for more)"
        )
    module = builtins.__import__(name, globals, locals, fromlist or (), 0)
    for item in fromlist or ():  # `from datetime import sys` bypasses _getattr_
        _checked_module_value(getattr(module, item, None), f"{name}.{item}")
    return module


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    try:
        return _INPLACE[op](target, value)
    except KeyError:
        raise SyntaxError(f"in-place operator {op!r} is not supported") from None


class _StdoutPrint:
    """RestrictedPython's ``_print_`` protocol, writing to stdout instead of collecting."""

    def __init__(self, _getattr_: Callable[..., Any] | None = None) -> None:
        self._getattr = _getattr_ or _guarded_getattr

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is None:
            kwargs["file"] = sys.stdout
        else:
            self._getattr(kwargs["file"], "write")
        print(*objects, **kwargs)

    def __call__(self) -> str:  # the `printed` variable: output went to stdout, not here
        return ""


class RestrictedSession(session._Session):
    """The helper's session, compiling with RestrictedPython and running with its guards."""

    use_cgroup = False  # a host process: the cgroup it sees is the host's

    def compile_source(self, source: str | bytes, filename: str) -> Any:
        if isinstance(source, bytes):  # a file: decoded as Python would (PEP 263 cookie)
            try:
                source = importlib.util.decode_source(source)
            except UnicodeDecodeError as exc:
                raise SyntaxError(f"(unicode error) {exc}", (filename, 0, 0, "")) from None
        result = compile_restricted_exec(source, filename)
        if result.errors:
            raise SyntaxError(
                "the restricted backend refused this code: " + "; ".join(result.errors)
            )
        return result.code

    def new_namespace(self, **names: Any) -> dict[str, Any]:
        restricted = {**safe_builtins, **{n: getattr(builtins, n) for n in _EXTRA_BUILTINS}}
        restricted.update(
            __import__=_guarded_import,
            open=self._open,
            getattr=_guarded_getattr,
            hasattr=lambda obj, name: _guarded_getattr(obj, name, _MISSING) is not _MISSING,
        )
        return {
            "__builtins__": restricted,
            "__metaclass__": type,
            "_getattr_": _guarded_getattr,
            "_getitem_": default_guarded_getitem,
            "_getiter_": default_guarded_getiter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_write_": full_write_guard,
            "_inplacevar_": _inplacevar,
            "_apply_": lambda function, *args, **kwargs: function(*args, **kwargs),
            "_print_": _StdoutPrint,
            **names,
        }

    def _open(
        self,
        file: str,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> IO[Any]:
        """``open`` for paths inside the workspace only (no descriptors, no openers)."""
        if not isinstance(file, str):
            raise TypeError("open() takes a path (str) in the restricted backend")
        target = os.path.realpath(os.path.join(self.workspace, file))
        if target != self.workspace and not target.startswith(self.workspace + os.sep):
            raise PermissionError(
                f"open({file!r}): the restricted backend only opens files inside its workspace"
            )
        return open(target, mode, buffering, encoding, errors, newline)


def main(argv: list[str] | None = None) -> None:
    """``python restricted_runner.py SOCKET --workspace DIR --session ID``"""
    # Imported now, from the stdlib: later, a workspace file of the same name (exec_file puts
    # the script's folder first on sys.path) could never stand in for one, unrestricted.
    for name in sorted(ALLOWED_MODULES):
        importlib.import_module(name)
    startup.main(argv, session_class=RestrictedSession)


if __name__ == "__main__":
    main()
