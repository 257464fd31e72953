#!/usr/bin/env bash
# Everything execloop needs on a fresh Debian/Ubuntu machine, idempotent (run as root):
# the Docker engine (started without a bridge network), a virtualenv in .venv with execloop
# installed in strict editable mode, and the sandbox images built offline.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $EUID -eq 0 ]] || { echo "setup: run me as root (sudo $0)" >&2; exit 1; }

bash scripts/docker-up.sh

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "setup: execloop needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# strict editable mode: type checkers follow the runtime/ and sandboxes/ mapping
.venv/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=strict
.venv/bin/execloop images build
