"""DiffAugment-StyleGAN2 end to end (data-efficient-gans, folder DiffAugment-stylegan2-pytorch):
apply, tiny CPU run with ``--nda=jigsaw --anda`` (DiffAugment on, ADA off as the fork does),
snapshot holds the NDA state, resume continues alpha / w / step, revert leaves the tree pristine.

Needs ``NDA_UPSTREAM_DIFFAUGMENT`` = the data-efficient-gans checkout (pinned 0b63395) or its
``DiffAugment-stylegan2-pytorch`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nda_plugins import _patching

from .conftest import assert_reverted, copy_checkout, run_training, snapshot_state, tiny_dataset, upstream_checkout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "data-efficient-gans"
TRAIN = {"nda": "jigsaw", "anda": True, "anda_target": -0.99, "anda_kimg": 0.1, "steps": 8, "steps_per_tick": 4,
         "diffaugment": "color,translation,cutout"}


def train(checkout: Path, data: Path, outdir: Path, **kw):
    run_dir, stdout, ticks = run_training(checkout, data, outdir, dict(TRAIN, **kw))
    assert all("anda_alpha" in t for t in ticks), stdout[-3000:]
    return run_dir, stdout


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    src = upstream_checkout("NDA_UPSTREAM_DIFFAUGMENT")
    series = _patching.get_series(NAME)
    if (src / series.subdir).is_dir():
        src = src / series.subdir  # copy only the fork's folder
    dst = copy_checkout(src, tmp_path_factory.mktemp("da") / series.subdir, series.commit)
    assert _patching.status(dst)["state"] == "pristine"
    return dst


def test_apply_train_resume_revert(checkout, tmp_path):
    before = {rel: _patching.sha256(checkout / rel) for rel in _patching.get_series(NAME).files}
    assert "applied" in _patching.apply("diffaugment", checkout)  # by alias
    assert "already applied" in _patching.apply(NAME, checkout)

    data = tiny_dataset(tmp_path / "tiny16.zip")
    run1, _ = train(checkout, data, tmp_path / "run1")
    opts = json.loads((run1 / "training_options.json").read_text())
    assert opts["loss_kwargs"]["class_name"] == "nda_plugins.adapters.diffaugment.loss.NDAStyleGAN2Loss"
    assert opts["loss_kwargs"]["diffaugment"] == "color,translation,cutout"
    s1 = snapshot_state(checkout, run1 / "network-snapshot-000000.pkl")
    assert s1["step"] == 8 and s1["alpha"] == pytest.approx(0.32) and s1["ada_p"] is None

    run2, out2 = train(checkout, data, tmp_path / "run2", resume=str(run1 / "network-snapshot-000000.pkl"))
    assert "Restored NDA step 8, w 0.5100, alpha 0.3200" in out2
    s2 = snapshot_state(checkout, run2 / "network-snapshot-000000.pkl")
    assert s2["step"] == 16 and s2["alpha"] == pytest.approx(0.64)

    assert_reverted(NAME, checkout, before)
