"""StyleGAN2-ADA end to end: apply the series to a clean checkout, train a tiny model on CPU with
``--nda=jigsaw --anda`` for a few ticks, check the snapshot's NDA state, resume and check that
alpha, w, the step and ADA's p continue, then revert and check the tree is pristine.

Needs ``NDA_UPSTREAM_STYLEGAN2_ADA`` = a checkout of NVlabs/stylegan2-ada-pytorch (pinned d72cc7d).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nda_plugins import _patching

from .conftest import assert_reverted, copy_checkout, run_py, run_training, snapshot_state, tiny_dataset, tiny_dataset_dir, upstream_checkout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "stylegan2-ada"
# alpha and ADA's p both move by batch * interval / (kimg * 1000) = 4 * 4 / 100 = 0.16 per update
TRAIN = {"nda": "jigsaw", "anda": True, "anda_target": -0.99, "anda_kimg": 0.1,
         "ada_kimg": 0.1, "ada_target": -0.99, "steps": 8, "steps_per_tick": 4}


def train(checkout: Path, data: Path, outdir: Path, **kw) -> Path:
    run_dir, stdout, ticks = run_training(checkout, data, outdir, dict(TRAIN, **kw))
    assert all("nda_w" in t and ("anda_alpha" in t) == bool(dict(TRAIN, **kw)["anda"]) for t in ticks)
    return run_dir, stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    src = upstream_checkout("NDA_UPSTREAM_STYLEGAN2_ADA")
    series = _patching.get_series(NAME)
    dst = copy_checkout(src, tmp_path_factory.mktemp("sg2") / "stylegan2-ada-pytorch", series.commit)
    assert _patching.status(dst)["state"] == "pristine", "the checkout must be the pinned, unpatched upstream"
    return dst


def test_apply_train_resume_revert(checkout, tmp_path):
    before = {rel: _patching.sha256(checkout / rel) for rel in _patching.get_series(NAME).files}
    assert _patching.check(NAME, checkout)["ok"]
    assert "applied" in _patching.apply(NAME, checkout)
    assert "already applied" in _patching.apply(NAME, checkout)

    # The compatibility fix keeps grid_sample_gradfix's custom op on, with correct double backward.
    probe = run_py(["-c", "import sys, torch; sys.path.insert(0, '.')\n"
                    "from torch_utils.ops import grid_sample_gradfix as g\n"
                    "g.enabled = True\n"
                    "x = torch.randn(2, 3, 5, 5, dtype=torch.double, requires_grad=True)\n"
                    "grid = torch.rand(2, 4, 4, 2, dtype=torch.double) * 2 - 1\n"
                    "f = lambda a: g.grid_sample(a, grid)\n"
                    "print(g._should_use_custom_op(), torch.autograd.gradgradcheck(f, (x,)))"], cwd=checkout)
    assert probe.returncode == 0 and probe.stdout.split() == ["True", "True"], probe.stderr[-2000:]

    # The flags go through upstream's click command (dry run: options printed, nothing trained).
    data = tiny_dataset(tmp_path / "tiny16.zip")
    dry = run_py(["train.py", f"--outdir={tmp_path / 'dry'}", f"--data={data}", "--metrics=none", "--dry-run",
                  "--nda=jigsaw", "--nda-weight=0.5", "--anda", "--anda-kimg=100"], cwd=checkout)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert '"class_name": "nda_plugins.adapters.stylegan2_ada.loss.NDAStyleGAN2Loss"' in dry.stdout
    assert '"anda_kimg": 100.0' in dry.stdout and "ndajigsaw-w0.5-anda" in dry.stdout
    bad = run_py(["train.py", f"--outdir={tmp_path / 'dry'}", f"--data={data}", "--dry-run",
                  "--nda=jigsaw", "--nda-weight=1.5"], cwd=checkout)
    out = bad.stdout + bad.stderr  # upstream's Logger copies stderr to stdout
    assert bad.returncode == 2 and "Invalid value for --nda-weight: weight must be in [0, 1), got 1.5" in out

    # The launch script: patch (already applied: left as is) and run train.py with default NDA flags.
    import nda_plugins.adapters as adapters

    script = Path(adapters.__file__).parent / "stylegan2_ada" / "train_nda.sh"
    env = dict(__import__("os").environ, PYTHON=__import__("sys").executable)
    launch = subprocess.run(["sh", str(script), str(checkout), f"--outdir={tmp_path / 'dry'}", f"--data={data}",
                             "--metrics=none", "--dry-run"], capture_output=True, text=True, env=env)
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    assert "already applied" in launch.stdout and "ndajigsaw-w0.75" in launch.stdout

    # Tiny CPU run: 8 steps, a tick every 4 steps (ticks at steps 1, 4, 8).
    run1, _ = train(checkout, data, tmp_path / "run1")
    s1 = snapshot_state(checkout, run1 / "network-snapshot-000000.pkl")
    assert "nda_plugins" in s1["keys"]
    assert s1["step"] == s1["num_advances"] == 8
    assert s1["alpha"] == pytest.approx(0.32)  # two updates of 0.16
    assert s1["ada_p"] == pytest.approx(0.32, abs=1e-6)

    # Resume: alpha, w, the step and ADA's p continue from where they were.
    run2, out2 = train(checkout, data, tmp_path / "run2", resume=str(run1 / "network-snapshot-000000.pkl"))
    assert "Restored NDA step 8, w 0.5100, alpha 0.3200; ADA p 0.3200" in out2
    first = next(l for l in out2.splitlines() if l.startswith("tick 0"))
    assert "nda_w 0.510" in first and "anda_alpha 0.320" in first
    s2 = snapshot_state(checkout, run2 / "network-snapshot-000000.pkl")
    assert s2["step"] == 16
    assert s2["alpha"] == pytest.approx(0.64)
    assert s2["ada_p"] == pytest.approx(0.64, abs=1e-6)

    # Conditional model, replace estimator: negatives keep their source's label, one D pass.
    run3, _ = train(checkout, tiny_dataset_dir(tmp_path / "tinydir"), tmp_path / "run3", nda="cutout",
                    nda_mode="replace", nda_weight=0.5, cond=True, anda=False, anda_target=None, anda_kimg=None)
    stats = [json.loads(l) for l in (run3 / "stats.jsonl").read_text().splitlines()]
    assert 0 < sum(s["NDA/replaced"]["mean"] for s in stats) / len(stats) < 1
    assert json.loads((run3 / "training_options.json").read_text())["training_set_kwargs"]["use_labels"] is True

    # Revert: the tree is pristine again.
    assert_reverted(NAME, checkout, before)
