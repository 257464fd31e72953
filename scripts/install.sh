#!/usr/bin/env bash
# One command: install everything (Docker engine and images included), then run an
# agent-written script in a hardened Docker sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "install: running examples/agent_script.py in a sandbox (network none, read-only root, uid 1000)"
.venv/bin/execloop run examples/agent_script.py --input examples/data/orders.csv --memory 512m
