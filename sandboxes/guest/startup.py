"""The helper's command line: ``python .../helper SOCKET [--workspace DIR] [--session ID]
[--reap-all]`` connects to the host's socket and serves (no argparse: it would slow every
start)."""

from __future__ import annotations

import _socket  # not socket: its enum and selectors imports cost every start ~5 ms
import os
import sys

from .probes import private_pid_namespace_problem
from .session import _Session

__all__ = ["main"]


def main(argv: list[str] | None = None, *, session_class: type[_Session] = _Session) -> None:
    """``helper.py SOCKET [--workspace DIR] [--session ID] [--reap-all]`` (no argparse: it
    would slow every start)."""
    args = list(sys.argv[1:] if argv is None else argv)
    reap_all = "--reap-all" in args
    if reap_all:  # kill every other process after each exec: only in a private PID namespace
        args.remove("--reap-all")
        problem = private_pid_namespace_problem()
        if problem is not None:
            sys.exit(f"helper.py: refusing --reap-all (it kills every other process): {problem}")
    options = {"--workspace": os.getcwd(), "--session": ""}
    for flag in options:  # --session only marks the command line, so leaks can be found
        if flag in args:
            index = args.index(flag)
            options[flag] = args[index + 1]
            del args[index : index + 2]
    workspace = options["--workspace"]
    if len(args) != 1:
        sys.exit("usage: helper.py SOCKET [--workspace DIR] [--session ID] [--reap-all]")
    workspace = os.path.realpath(workspace)
    os.chdir(workspace)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.connect(args[0])
    session_class(sock, workspace, reap_all).serve()
