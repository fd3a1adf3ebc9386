"""pix2pix series on a real checkout (``NDA_UPSTREAM_PIX2PIX``): apply to a private copy, train a
tiny ``--model pix2pix_nda`` on CPU with NDA on procedural aligned A|B images, save, resume with
``--continue_train`` and check the NDA state continues, revert to the pinned bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nda_plugins import _patching

from .conftest import assert_reverted, copy_checkout, run_py, upstream_checkout

NEW = "models/pix2pix_nda_model.py"


def aligned_dataroot(root, n=4, res=32):
    """``n`` aligned A|B PNGs (``res`` x ``2*res``): A a gradient, B its colour-shifted copy."""
    import PIL.Image

    (root / "train").mkdir(parents=True)
    yy, xx = np.mgrid[0:res, 0:res]
    for i in range(n):
        a = np.stack([(xx * 8 + i * 40) % 256, (yy * 8) % 256, np.full_like(xx, 60 * i % 256)], -1).astype(np.uint8)
        b = np.roll(a, shift=i + 1, axis=-1)
        PIL.Image.fromarray(np.concatenate([a, b], axis=1)).save(root / "train" / f"{i}.png")
    return root


def nda_state(path):
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved["session"]["nda_plugins.session"]


TRAIN = ["--model", "pix2pix_nda", "--name", "tiny", "--netG", "resnet_6blocks", "--ngf", "8", "--ndf", "8",
         "--load_size", "32", "--crop_size", "32", "--batch_size", "2", "--num_threads", "0",
         "--print_freq", "2", "--save_epoch_freq", "1", "--n_epochs_decay", "0",
         "--nda", "jigsaw", "--nda_weight", "0.5", "--nda_schedule", "linear:steps=100"]


@pytest.mark.slow
def test_pix2pix_train_resume_revert(tmp_path):
    src = upstream_checkout("NDA_UPSTREAM_PIX2PIX")
    series = _patching.get_series("pix2pix")
    checkout = copy_checkout(src, tmp_path / "p2p", series.commit)
    probe = run_py(["-c", "import sys; sys.path.insert(0, '.'); import util.visualizer"], cwd=checkout)
    if probe.returncode != 0:
        pytest.skip(f"upstream's util.visualizer does not import here: {probe.stderr.strip().splitlines()[-1]}")
    assert not (checkout / NEW).exists()
    assert "applied" in _patching.apply("pix2pix", checkout)
    assert "already applied" in _patching.apply("pix2pix", checkout)

    data = aligned_dataroot(tmp_path / "facades")
    ckpt = tmp_path / "ckpt"
    common = ["--dataroot", str(data), "--checkpoints_dir", str(ckpt)] + TRAIN
    first = run_py(["train.py", *common, "--n_epochs", "1"], cwd=checkout, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = ckpt / "tiny"
    assert (run / "latest_net_D.pth").is_file() and (run / "latest_nda_state.pth").is_file()
    after_first = nda_state(run / "latest_nda_state.pth")
    assert after_first["num_advances"] == 2  # 4 images, batch 2, one epoch
    log = (run / "loss_log.txt").read_text()
    assert "D_NDA" in log, log[-2000:]

    second = run_py(["train.py", *common, "--continue_train", "--epoch_count", "2", "--n_epochs", "2"],
                    cwd=checkout, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "no NDA state" not in second.stderr
    after_second = nda_state(run / "latest_nda_state.pth")
    assert after_second["num_advances"] == 4  # continued from 2, not restarted at 0
    assert not torch.equal(after_first["generator"]["state"], after_second["generator"]["state"])

    assert_reverted("pix2pix", checkout, {NEW: None})
    assert not (checkout / NEW).exists()
