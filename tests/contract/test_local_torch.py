"""`execloop run --backend local` trains a small PyTorch model with the default limits (1 GiB,
256 processes, 60 s, one CPU): torch's threads and its import fit them. torch comes from the
`train` extra, which scripts/setup.sh installs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TRAINS = """
import json
import torch

torch.manual_seed(0)
x = torch.randn(512, 16)
y = x @ torch.randn(16, 1) + 0.1 * torch.randn(512, 1)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for step in range(200):
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
result = {"loss_initial": losses[0], "loss_final": losses[-1], "threads": torch.get_num_threads()}
json.dump(result, open("result.json", "w"))
"""


def test_local_backend_trains_a_pytorch_model_with_default_limits(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAINS)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "execloop.runtime.cli", "run", "--backend", "local"),
            *("--json", "--out", str(out), str(script)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["result"]["exit_reason"] == "ok"
    result = json.loads((out / "result.json").read_text())
    assert result["loss_final"] < result["loss_initial"] / 10  # it really trained
