#!/usr/bin/env bash
# One command: install everything, then lint, type-check and run the whole test suite
# (unit tests, and contract tests on the real Docker daemon).
set -euo pipefail
source "$(dirname "$0")/as-root.sh"  # as root already, or re-run with sudo
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The training skills' tests (tests/contract/test_training.py, test_pipeline.py and the skill
# examples) run in the CPU train image: about 6 min to build the first time, 1 s once it exists.
.venv/bin/execloop images build train --torch cpu
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
