#!/usr/bin/env bash
# One command: install everything (Docker engine and images included), then run an
# agent-written script in a hardened Docker sandbox, then the keyless demo: every built-in
# skill's task and a task calling host tools, solved through the broker by SCRIPTED models
# (no LLM is called), checked, re-verified, and reported with the token ledger
# (execloop-demo/report.html).
set -euo pipefail
source "$(dirname "$0")/as-root.sh"  # as root already, or re-run with sudo
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "install: running examples/agent_script.py in a sandbox (network none, read-only root, uid 1000)"
.venv/bin/execloop run examples/agent_script.py --input examples/data/orders.csv --memory 512m
echo "install: keyless demo through the broker (scripted model: replies are replayed, not generated)"
.venv/bin/execloop demo --out execloop-demo
