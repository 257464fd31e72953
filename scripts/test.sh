#!/usr/bin/env bash
# One command: install everything, then lint, type-check and run the whole test suite
# (unit tests, and contract tests on the real Docker daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
