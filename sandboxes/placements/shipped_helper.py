"""The helper as a sandbox without the image gets it: sources and their compiled forms."""

from __future__ import annotations

import functools
import importlib.util
import marshal
from pathlib import Path, PurePath

from execloop.sandboxes import helper

__all__ = ["HELPER", "helper_files"]

HELPER = "/opt/execloop/helper.py"  # the source, for the lines of the helper's own tracebacks


@functools.cache
def helper_files() -> dict[str, bytes]:
    """What the state directory ships of the helper, by path relative to the helper's folder:
    ``helper.py`` and the ``guest`` package's modules, each with its compiled form (read and
    compiled once per process).

    Python compiles a script it is given as source on every start, and cannot cache modules on
    a read-only mount: 6 ms of CPU per sandbox for the helper alone. The sandbox runs the
    host's own interpreter, so the host compiles each file once, to a pyc whose code names the
    file's path in the sandbox (PEP 552 layout: magic number, flags 0b01 = "hash-based, never
    checked against the source", the source's hash, the marshalled code). ``helper.pyc`` is
    what runs; the modules' pycs sit in ``guest/__pycache__``, where imports look first."""
    folder = PurePath(HELPER).parent
    shipped: dict[str, bytes] = {}
    for name, host_path in helper.shipped_files():
        source = Path(host_path).read_bytes()
        code = compile(source, str(folder / name), "exec", dont_inherit=True)
        header = importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little")
        compiled = header + importlib.util.source_hash(source) + marshal.dumps(code)
        shipped[name] = source
        if name == "helper.py":
            shipped["helper.pyc"] = compiled
        else:
            shipped[importlib.util.cache_from_source(name)] = compiled
    return shipped
