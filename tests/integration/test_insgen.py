"""InsGen end to end: apply the series (including the one-GPU fix) to a clean checkout, train a
tiny model on CPU with ``--nda=jigsaw --anda`` and InsGen's contrastive heads, check the
snapshot's NDA state, resume and check alpha / w / step / ADA's p continue, revert to pristine.

Needs ``NDA_UPSTREAM_INSGEN`` = a checkout of genforce/insgen (pinned 52bda7c).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nda_plugins import _patching

from .conftest import assert_reverted, copy_checkout, run_training, snapshot_state, tiny_dataset, upstream_checkout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "insgen"
TRAIN = {"nda": "jigsaw", "anda": True, "anda_target": -0.99, "anda_kimg": 0.1,
         "ada_kimg": 0.1, "ada_target": -0.99, "steps": 8, "steps_per_tick": 4}


def train(checkout: Path, data: Path, outdir: Path, **kw):
    run_dir, stdout, ticks = run_training(checkout, data, outdir, dict(TRAIN, **kw))
    assert all("anda_alpha" in t for t in ticks), stdout[-3000:]
    return run_dir, stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    src = upstream_checkout("NDA_UPSTREAM_INSGEN")
    series = _patching.get_series(NAME)
    dst = copy_checkout(src, tmp_path_factory.mktemp("insgen") / "insgen", series.commit)
    assert _patching.status(dst)["state"] == "pristine"
    return dst


def test_apply_train_resume_revert(checkout, tmp_path):
    before = {rel: _patching.sha256(checkout / rel) for rel in _patching.get_series(NAME).files}
    assert "applied" in _patching.apply(NAME, checkout)
    assert "already applied" in _patching.apply(NAME, checkout)

    data = tiny_dataset(tmp_path / "tiny16.zip")
    run1, _ = train(checkout, data, tmp_path / "run1")
    opts = json.loads((run1 / "training_options.json").read_text())
    assert opts["loss_kwargs"]["class_name"] == "nda_plugins.adapters.insgen.loss.NDAStyleGAN2LossCL"
    stats = [json.loads(l) for l in (run1 / "stats.jsonl").read_text().splitlines()]
    assert {"Loss/D_cl", "Loss/G_cl", "NDA/loss", "NDA/alpha"} <= set(stats[-1])  # InsGen and NDA both ran
    s1 = snapshot_state(checkout, run1 / "network-snapshot-000000.pkl")
    assert {"DHead", "GHead", "nda_plugins"} <= set(s1["keys"])
    assert s1["step"] == 8 and s1["alpha"] == pytest.approx(0.32) and s1["ada_p"] == pytest.approx(0.32, abs=1e-6)

    run2, out2 = train(checkout, data, tmp_path / "run2", resume=str(run1 / "network-snapshot-000000.pkl"))
    assert "Restored NDA step 8, w 0.5100, alpha 0.3200; ADA p 0.3200" in out2
    s2 = snapshot_state(checkout, run2 / "network-snapshot-000000.pkl")
    assert s2["step"] == 16 and s2["alpha"] == pytest.approx(0.64) and s2["ada_p"] == pytest.approx(0.64, abs=1e-6)

    assert_reverted(NAME, checkout, before)
