"""``benchmarks/gpu_check.sh``'s StyleGAN2-ADA stage (c) on a real checkout, as a CPU dry run.

Needs ``NDA_UPSTREAM_STYLEGAN2_ADA`` = a checkout of NVlabs/stylegan2-ada-pytorch (pinned d72cc7d).
On a CPU the fused ops cannot build, but upstream's ``_init()`` still tries, and every try makes
a build folder with a lock file. The script must keep those in a private folder: older PyTorch
waits for as long as a lock file exists, so one left in the caller's ``~/.cache/torch_extensions``
(by another PyTorch version, or a killed build) would stall the stage until its time limit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import upstream_checkout

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                       reason="gpu_check.sh needs bash and coreutils' timeout"),
    pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the dry run is not what runs"),
]


def test_stage_c_dry_run_keeps_builds_out_of_the_callers_cache(tmp_path):
    src = upstream_checkout("NDA_UPSTREAM_STYLEGAN2_ADA")
    home = tmp_path / "home"
    stale = home / ".cache" / "torch_extensions" / "py_any" / "bias_act_plugin" / "lock"
    stale.parent.mkdir(parents=True)
    stale.touch()  # what another run left behind
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NDA_") and k not in ("TORCH_EXTENSIONS_DIR", "XDG_CACHE_HOME")}
    env.update(PYTHON=sys.executable, NDA_GPU_CHECK_DRY_RUN="1", NDA_UPSTREAM_STYLEGAN2_ADA=str(src),
               HOME=str(home), OMP_NUM_THREADS="1")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=500)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary
    for stage in ("[c. nda patch apply] ok", "[c. fused-op tick (plain)] ok", "[c. fused-op tick (nda)] ok",
                  "[c. nda patch revert] ok", "[c. pristine after revert] ok"):
        assert stage in summary, summary
    cache = home / ".cache" / "torch_extensions"
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == [stale]  # nothing built or locked there
