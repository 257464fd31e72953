"""execloop's in-sandbox helper: runs code sent over a Unix socket and keeps its state.

In a sandbox this file runs as ``python /opt/execloop/helper.py SOCKET ...`` with the ``guest``
package (its modules, one job each, standard library only) beside it; the image builder copies
both into images (``shipped_files``), the bubblewrap backend binds them in. On the host this
module is what both sides share: the framing, the tar checks and the manifest walk.

Protocol: every frame is ``!IQ`` (header length, body length), a header, then the body. A
frame without a header is a *chunk* of a stream (at most ``CHUNK_BYTES``); a stream ends with
the next header frame, so neither side ever holds a whole transfer in memory. The helper
connects to the host's listening socket, sends ``hello``, then serves one request at a time:

- ``exec`` (``code``, or ``path`` and ``args``): the reply holds an ``ExecResult``'s fields.
  An exec of ``code`` that does not stream travels as compact structs (``EXEC_REQUEST`` with
  the code as body, ``EXEC_REPLY`` with stdout and stderr as body): no JSON either way;
- ``put`` (``dest``, ``bytes``, ``files``): the helper checks the free space and replies
  ``go`` (or an error); the host streams a tar as chunks, ends with ``{"op": "end"}``, and
  the final reply follows;
- ``get`` (``path``): ``{"stream": true}``, the tar as chunks, then the final reply;
- ``manifest`` (``path``, ``limit``): totals in the header, the listing as a JSON body;
- with ``stream: true`` an ``exec`` sends *output frames* before its reply: a header
  ``{"op": "output", "stream": "stdout" | "stderr"}`` and the bytes as body (at most
  ``CHUNK_BYTES``), what the drain thread read at each poll, at most ``keep`` bytes a stream;
- ``ping``.

A reply carrying ``ended`` says the session cannot go on (the script called ``os._exit``, or
left no file descriptor or memory for the helper); the host then closes it with that reason.
"""

from __future__ import annotations

import importlib
import os
import sys

if __name__ == "__main__":  # in the sandbox: this file's folder, first on sys.path, holds guest/
    importlib.import_module("guest.startup").main()
    sys.exit()

from execloop.sandboxes.guest.capture import _Bounded
from execloop.sandboxes.guest.framing import (
    CHUNK_BYTES,
    EXEC_REPLY,
    EXEC_REQUEST,
    EXIT_REASONS,
    FRAME_PREFIX,
    MAX_HEADER_BYTES,
    decode_exec_reply,
    encode_chunk,
    encode_exec_request,
    encode_frame,
    encode_output,
    exec_reply_bound,
)
from execloop.sandboxes.guest.manifests import (
    MANIFEST_ENTRY_BUDGET,
    ManifestBuilder,
    TarRefusedError,
    check_tar_member,
    manifest_body_bound,
    walk_files,
)
from execloop.sandboxes.guest.session import _Session, python_exit_status
from execloop.sandboxes.guest.startup import main

__all__ = [
    "CHUNK_BYTES",
    "EXEC_REPLY",
    "EXEC_REQUEST",
    "EXIT_REASONS",
    "FRAME_PREFIX",
    "MANIFEST_ENTRY_BUDGET",
    "MAX_HEADER_BYTES",
    "ManifestBuilder",
    "TarRefusedError",
    "_Bounded",
    "_Session",
    "check_tar_member",
    "decode_exec_reply",
    "encode_chunk",
    "encode_exec_request",
    "encode_frame",
    "encode_output",
    "exec_reply_bound",
    "main",
    "manifest_body_bound",
    "python_exit_status",
    "shipped_files",
    "walk_files",
]


def shipped_files() -> list[tuple[str, str]]:
    """``(path relative to the helper's folder, host path)`` of what a sandbox needs: this
    file and the ``guest`` package's modules, sorted. Host paths are resolved (an editable
    install's folders hold links, which a bind mount or an image build would not follow)."""
    guest = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest")
    modules = sorted(name for name in os.listdir(guest) if name.endswith(".py"))
    shipped = [("helper.py", os.path.realpath(__file__))]
    shipped += [(f"guest/{name}", os.path.realpath(os.path.join(guest, name))) for name in modules]
    return shipped
