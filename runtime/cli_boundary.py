"""Where the command line meets the library: options in, errors out, one line each.

Inside, execloop raises ``ExecloopError``s and pydantic ``ValidationError``s that name API
fields (``max_wall_time_s``); the person typed flags (``--max-time``). ``flags`` turns a model's
validation error into a usage error naming the flags of the command that ran, and
``GuardedGroup`` turns whatever escapes a command into one line on stderr and a shell exit
status. A traceback is shown only with ``-v``: to a user it is a defect, to a bug report a help.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import click
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from execloop.errors import ExecloopError
from execloop.runtime.terminal import one_line

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "GuardedGroup",
    "configure_logging",
    "describe_validation",
    "flags",
    "guarded",
]

EXIT_ERROR = 2  # bad usage or input, and every ExecloopError (click uses 2 for usage errors)
EXIT_INTERNAL = 70  # EX_SOFTWARE from sysexits.h: a bug in execloop
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "greater than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _explain(error: ErrorDetails) -> str:
    """One pydantic error in plain words: ``must be at least 1 (got 0)``."""
    kind, ctx = error["type"], error.get("ctx") or {}
    got = f" (got {error['input']!r:.60})" if isinstance(error["input"], int | float | str) else ""
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx[key]}{got}"
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "missing":
        return "is required"
    message = error["msg"]
    return message[:1].lower() + message[1:] + got


def describe_validation(exc: ValidationError, names: Mapping[str, str]) -> str:
    """``exc`` on one line, each error led by what the user knows it as: ``names`` maps the
    first field of an error's location to a flag or argument (``{"max_attempts":
    "--max-attempts"}``); other locations are shown as dotted field paths."""
    parts = []
    for error in exc.errors():
        loc = error["loc"]
        where = names.get(str(loc[0])) if loc else None
        where = where or ".".join(str(part) for part in loc)
        parts.append(f"{where}: {_explain(error)}" if where else _explain(error))
    return one_line("; ".join(dict.fromkeys(parts)))


@contextmanager
def flags(names: Mapping[str, str] | str) -> Iterator[None]:
    """Within, a ``ValidationError`` (or, when ``names`` is one flag, also a ``ConfigError``
    about what that flag gave) becomes a ``click.UsageError`` naming the flag."""
    try:
        yield
    except ValidationError as exc:
        mapping = {str(loc): names for loc in _locations(exc)} if isinstance(names, str) else names
        raise click.UsageError(describe_validation(exc, mapping)) from exc
    except ExecloopError as exc:
        if not isinstance(names, str):
            raise
        raise click.UsageError(f"{names}: {one_line(str(exc))}") from exc


def _locations(exc: ValidationError) -> set[str | int]:
    return {error["loc"][0] for error in exc.errors() if error["loc"]}


class _OneLineHandler(logging.Handler):
    """Library warnings as ``warning: ...`` on one printable line of the current stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {one_line(record.getMessage())}", err=True)


# Whose warnings the CLI shows: execloop's own, and the MCP SDK's (``execloop mcp``, MCP tools)
_WARNING_LOGGERS = ("execloop", "mcp")


def configure_logging(*, verbose: bool) -> None:
    """The one place that configures logging (the library never does). ``-v``: every step on
    stderr. Otherwise warnings only, one line each, never Python's bare last-resort output."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
        return
    for name in _WARNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, _OneLineHandler) for handler in logger.handlers):
            logger.addHandler(_OneLineHandler(logging.WARNING))


def _verbose(args: Sequence[str]) -> bool:
    """``-v`` among the group's own options (they come before the command's name)."""
    values = iter(args)
    for arg in values:
        if not arg.startswith("-"):
            return False
        if arg in ("-v", "--verbose"):
            return True
        if arg == "--config":  # an option of the group that takes a value
            next(values, None)
    return False


def _say(message: str) -> None:
    click.echo(click.style("error:", fg="red", bold=True) + " " + one_line(message), err=True)


def guarded(call: Callable[[], Any], *, verbose: bool) -> int:
    """Run ``call`` (a command line, non-standalone) and return its exit status; every error
    is one line on stderr, with the traceback before it when ``verbose``."""
    try:
        outcome = call()
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        _traceback(exc, verbose)
        click.echo("execloop: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        _traceback(exc, verbose)
        _say(exc.format_message() + _help_hint(exc))
        return exc.exit_code
    except ExecloopError as exc:
        _traceback(exc, verbose)
        _say(str(exc))
        return EXIT_ERROR
    except ValidationError as exc:  # a model built from user input outside any ``flags``
        _traceback(exc, verbose)
        _say(describe_validation(exc, {}))
        return EXIT_ERROR
    except OSError as exc:
        _traceback(exc, verbose)
        if exc.filename is None:
            return _internal(exc)
        _say(f"{exc.filename}: {exc.strerror or exc}")
        return EXIT_ERROR
    except Exception as exc:
        _traceback(exc, verbose)
        return _internal(exc)
    return outcome if isinstance(outcome, int) else 0


def _help_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    return (
        f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx else ""
    )


def _internal(exc: BaseException) -> int:
    click.echo(
        f"execloop: internal error: {type(exc).__name__}: {one_line(str(exc))} "
        "(run with -v for the traceback; please report it)",
        err=True,
    )
    return EXIT_INTERNAL


def _traceback(exc: BaseException, verbose: bool) -> None:
    if verbose:
        click.echo("".join(traceback.format_exception(exc)).rstrip(), err=True)


class GuardedGroup(click.Group):
    """A ``click.Group`` whose standalone ``main`` reports errors through ``guarded``."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:  # the caller handles errors itself
            return super().main(argv, prog_name, complete_var, False, **extra)

        def call() -> Any:
            return super(GuardedGroup, self).main(argv, prog_name, complete_var, False, **extra)

        sys.exit(guarded(call, verbose=_verbose(argv)))
