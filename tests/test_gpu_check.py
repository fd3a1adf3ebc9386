"""benchmarks/gpu_check.sh without CUDA: it says so, writes its summary and exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="gpu_check.sh needs bash and coreutils' timeout")


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs every stage (minutes)")
def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDA_")}
    env["PYTHON"] = sys.executable
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CUDA is not available here" in proc.stdout and "NDA_GPU_CHECK_DRY_RUN=1" in proc.stdout
    summary = (out / "summary.txt").read_text()
    assert "CUDA is not available here" in summary and summary.startswith("gpu_check: python ")
    env_txt = (out / "env.txt").read_text()
    assert f"nda_plugins from {REPO / 'nda_plugins'}" in env_txt  # this repository's code, not another install
    assert "cuda available False" in env_txt
    assert not (out / "test_cuda.log").exists()  # no stage ran
