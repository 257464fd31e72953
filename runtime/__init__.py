"""execloop.runtime: running scripts, the agent loop, the broker, the ledger and the CLI."""

from __future__ import annotations

if __name__ != "execloop.runtime":  # the folder is mapped into execloop; never import it bare
    raise ImportError(
        "import execloop.runtime, not runtime: the folder is part of the execloop package"
    )

from execloop.runtime.run import ScriptRun, run_script, run_script_async

__all__ = ["ScriptRun", "run_script", "run_script_async"]
