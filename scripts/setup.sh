#!/usr/bin/env bash
# Everything execloop needs on a fresh Debian/Ubuntu machine, idempotent (run as root):
# the Docker engine (started without a bridge network), a virtualenv in .venv with execloop
# installed in strict editable mode (dev, train and ray extras: torch for local training tests, ray for the cluster tests), and
# the sandbox images built offline (the train image is built only on demand).
set -euo pipefail
source "$(dirname "$0")/as-root.sh"  # as root already, or re-run with sudo
cd "$(dirname "$0")/.."

bash scripts/docker-up.sh

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: execloop needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
# BFCL's multi-turn tasks for `execloop bench tokens --bfcl N`: bfcl-eval without its declared
# dependencies (model clients, vllm, faiss...), which its data and tool classes do not import.
BFCL_EVAL="bfcl-eval==2026.3.23" MPMATH="mpmath==1.3.0"
# strict editable mode: type checkers follow the runtime/ and sandboxes/ mapping. The build
# backend's notices about editable installs are kept in a log, shown only on failure.
echo "setup: installing execloop into .venv (log: .venv/install.log)"
if ! { .venv/bin/python -m pip install --upgrade pip \
        && .venv/bin/python -m pip install -e '.[dev,train,ray]' --config-settings editable_mode=strict \
        && .venv/bin/python -m pip install --no-deps "$BFCL_EVAL" "$MPMATH"; \
     } >.venv/install.log 2>&1; then
    tail -n 40 .venv/install.log >&2
    echo "setup: pip install failed (full log: .venv/install.log)" >&2
    exit 1
fi
.venv/bin/execloop images build
.venv/bin/execloop kernels install >/dev/null  # nbclient/Jupyter find the sandboxed kernels
# The MCP Inspector (its --cli mode drives `execloop mcp` in tests/contract/test_mcp_server.py),
# project-local in build/inspector; skipped when present (it then runs with no registry access).
INSPECTOR_VERSION=2.12.0
if [[ ! -f build/inspector/node_modules/@modelcontextprotocol/inspector/package.json ]] \
    || ! grep -q "\"version\": \"$INSPECTOR_VERSION\"" \
        build/inspector/node_modules/@modelcontextprotocol/inspector/package.json; then
    command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
    mkdir -p build/inspector
    echo "setup: installing the MCP Inspector $INSPECTOR_VERSION into build/inspector"
    (cd build/inspector && npm install --no-audit --no-fund --silent \
        "@modelcontextprotocol/inspector@$INSPECTOR_VERSION")
fi
