#!/usr/bin/env bash
# One command: install everything, then lint, type-check and run the whole test suite
# (unit tests, and contract tests on the real Docker daemon).
set -euo pipefail
source "$(dirname "$0")/as-root.sh"  # as root already, or re-run with sudo
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
