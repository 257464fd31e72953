"""scripts/gpu-check.sh on this GPU-less machine: a clear one-line verdict, never a build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def _check(tmp_path: Path, nvidia_smi: str | None) -> subprocess.CompletedProcess[str]:
    """Run the script with PATH = a folder holding only ``nvidia-smi`` (when given) + the
    system's; the execloop of this interpreter's venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\nprintf '{nvidia_smi}'\n")
        fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "EXECLOOP": str(Path(sys.executable).parent / "execloop"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_no_driver_is_a_no_gpu_verdict(tmp_path: Path) -> None:
    done = _check(tmp_path, None)
    assert done.returncode == 2
    assert (
        done.stdout
        == "gpu-check: no GPU here: no nvidia-smi (no NVIDIA driver); nothing to check\n"
    )


def test_a_driver_without_gpus_is_a_no_gpu_verdict(tmp_path: Path) -> None:
    done = _check(tmp_path, "")
    assert done.returncode == 2
    assert done.stdout == "gpu-check: no GPU here: nvidia-smi lists no GPU; nothing to check\n"


@pytest.mark.docker
def test_a_gpu_the_daemon_cannot_pass_through_fails_before_any_build(tmp_path: Path) -> None:
    done = _check(
        tmp_path, "GPU 0: NVIDIA A100 (UUID: GPU-0a1b2c3d-1111-2222-3333-444455556666)\\n"
    )
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()
    assert line.startswith("gpu-check: FAIL: 1 GPU(s), but Docker cannot pass them through")
    assert "no NVIDIA runtime" in line and "nvidia-container-toolkit" in line
