#!/usr/bin/env bash
# Does execloop train on this machine's NVIDIA GPU? Unattended, in under 8 minutes: builds the
# train image (CUDA torch), then runs scripts/gpu_probe.py in a hardened sandbox with
# --gpus all: a CUDA matmul checked against the CPU and 50 LoRA steps (PEFT, a tiny GPT-2 built
# from a config). Prints one verdict line. Exit status: 0 pass, 1 fail, 2 no GPU here.
# Needs the Docker daemon and .venv of scripts/setup.sh (or EXECLOOP=path/to/execloop).
set -uo pipefail
cd "$(dirname "$0")/.."
EXECLOOP=${EXECLOOP:-.venv/bin/execloop}
PYTHON=$(dirname "$EXECLOOP")/python
BUDGET_S=${GPU_CHECK_BUDGET_S:-470}  # the whole check; 8 minutes with a margin
START=$SECONDS

verdict() { echo "gpu-check: $1"; exit "$2"; }
budget() {  # LEFT = seconds of the budget left; the check fails once none is
    LEFT=$((BUDGET_S - (SECONDS - START)))
    if ((LEFT <= 0)); then verdict "FAIL: out of time (${BUDGET_S} s)" 1; fi
}

if ! command -v nvidia-smi >/dev/null 2>&1; then
    verdict "no GPU here: no nvidia-smi (no NVIDIA driver); nothing to check" 2
fi
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [[ "$GPUS" -eq 0 ]]; then
    verdict "no GPU here: nvidia-smi lists no GPU; nothing to check" 2
fi
[[ -x "$EXECLOOP" ]] || verdict "FAIL: $EXECLOOP not found; run scripts/setup.sh first" 1

# The daemon must pass GPUs through (the same check a GPU task gets before its container).
if ! WHY=$("$PYTHON" - <<'PY' 2>&1
import shutil, docker
from execloop.sandboxes.placements.container import NVIDIA_HOOK, check_gpu_support
check_gpu_support(docker.from_env().info(), hook=shutil.which(NVIDIA_HOOK))
PY
); then
    verdict "FAIL: $GPUS GPU(s), but Docker cannot pass them through: ${WHY##*Error: }" 1
fi

LOG=$(mktemp -t execloop-gpu-check.XXXXXX)
trap 'rm -f "$LOG"' EXIT
budget
if ! timeout "$LEFT" "$EXECLOOP" images build train >"$LOG" 2>&1; then
    verdict "FAIL: building the train image failed or ran out of time: $(tail -n 3 "$LOG" | tr '\n' ' ')" 1
fi
budget
if ! timeout "$LEFT" "$EXECLOOP" run --image execloop/train --gpus all --memory 8g --cpus 2 \
        --timeout "$LEFT" scripts/gpu_probe.py >"$LOG" 2>&1; then
    verdict "FAIL: the probe failed in the sandbox: $(grep -m1 '^{' "$LOG" || tail -n 3 "$LOG" | tr '\n' ' ')" 1
fi
verdict "PASS in $((SECONDS - START)) s: $(grep -m1 '^{' "$LOG")" 0
