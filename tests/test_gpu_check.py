"""benchmarks/gpu_check.sh without CUDA: it says so, writes its summary and exits 0."""

from __future__ import annotations

import importlib.util
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


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the dry run is not what runs")
def test_dry_run_runs_every_stage_on_the_cpu(tmp_path):
    """NDA_GPU_CHECK_DRY_RUN=1: the stages run on the CPU with tiny repeats; the wheel folder is
    installed privately; the lightly adapter's tests for the device run when lightly imports."""
    pytest.importorskip("numpy")
    lightly = importlib.util.find_spec("lightly") is not None and importlib.util.find_spec("torchvision") is not None
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _tiny_wheel(wheels)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDA_")}
    env.update(PYTHON=sys.executable, NDA_GPU_CHECK_DRY_RUN="1", NDA_GPU_CHECK_WHEELS=str(wheels), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    assert "DRY RUN on the CPU" in summary and "FAILED" not in summary
    for stage in (f"[wheels from {wheels}] ok", "[a. tests/test_cuda.py] ok", "[b. bench_transforms] ok", "[b. bench_step] ok"):
        assert stage in summary, summary
    assert "NDA_UPSTREAM_STYLEGAN2_ADA is not set" in summary  # stage c needs a checkout
    # stage a ran test_cuda.py's checks on the CPU (NDA_TEST_DEVICE=cpu), not skipped them all
    log = (out / "test_cuda.log").read_text()
    assert " passed" in log and " failed" not in log and "needs CUDA" not in log, log[-2000:]
    if lightly:
        assert "[e. lightly MoCo on cpu] ok" in summary and "4 passed" in (out / "test_lightly_moco.log").read_text()
    else:
        assert "[e. lightly MoCo] skipped" in summary
    assert (out / "bench_transforms.json").is_file() and (out / "bench_step.json").is_file()


def test_bad_stage_list_names_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDA_")}
    env.update(PYTHON=sys.executable, NDA_GPU_CHECK_STAGES="a,x")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "NDA_GPU_CHECK_STAGES must be a comma-separated list of the stages a, b, c, e" in proc.stdout
    assert "got 'a,x'" in proc.stdout and not (out / "test_cuda.log").exists()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the dry run is not what runs")
def test_dry_run_of_one_stage_runs_only_that_stage(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NDA_")}
    env.update(PYTHON=sys.executable, NDA_GPU_CHECK_DRY_RUN="1", NDA_GPU_CHECK_STAGES="b", OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    assert "[b. bench_transforms] ok" in summary and "[b. bench_step] ok" in summary, summary
    for other in ("a", "c", "e"):
        assert f"[{other}] not selected (NDA_GPU_CHECK_STAGES=b)" in summary, summary
    assert not (out / "test_cuda.log").exists() and "stylegan2-ada" not in summary.lower()


def _tiny_wheel(folder: Path) -> None:
    """A one-module wheel (what NDA_GPU_CHECK_WHEELS holds: lightly, torchvision, ...)."""
    import zipfile

    name = "nda_gpu_check_probe-1.0"
    with zipfile.ZipFile(folder / "nda_gpu_check_probe-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("nda_gpu_check_probe.py", "OK = True\n")
        whl.writestr(f"{name}.dist-info/METADATA", "Metadata-Version: 2.1\nName: nda-gpu-check-probe\nVersion: 1.0\n")
        whl.writestr(f"{name}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{name}.dist-info/RECORD", "")
