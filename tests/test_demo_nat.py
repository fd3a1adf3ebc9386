"""Tests of ``nda demo nat``: the pieces (distance, training loops, table) and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nda_plugins import nat as nat_lib
from nda_plugins.cli import main
from nda_plugins.demo import nat

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_wasserstein_1d_matches_hand_computation():
    a = torch.tensor([0.0, 1.0, 5.0])
    b = torch.tensor([4.0, 0.5, 2.0])  # sorted: 0.5, 2, 4 -> gaps 0.5, 1, 1
    assert nat.wasserstein_1d(a, b) == pytest.approx(2.5 / 3)
    assert nat.wasserstein_1d(a, a.flip(0)) == 0.0
    shifted = torch.randn(100, generator=torch.Generator().manual_seed(0))
    assert nat.wasserstein_1d(shifted, shifted + 0.7) == pytest.approx(0.7, abs=1e-6)
    with pytest.raises(ValueError, match="same non-zero number"):
        nat.wasserstein_1d(a, b[:2])


def test_one_d_data_modes():
    gen = torch.Generator().manual_seed(0)
    x, labels = nat.sample_real(4000, generator=gen)
    assert x.shape == (4000, 1) and set(labels.tolist()) == {0, 1}
    means = torch.tensor(nat.REAL_MEANS)
    assert (x.squeeze(1) - means[labels]).abs().max() < 6 * nat.REAL_STD
    neg = nat.sample_negative(4000, generator=gen)
    assert abs(float(neg.mean()) - nat.NEGATIVE_MEAN) < 0.05


def _spy(monkeypatch, name):
    calls = []
    original = getattr(nat_lib, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(nat.nat, name, spy)
    return calls


@pytest.mark.parametrize("with_negatives", [False, True])
def test_classifier_training_uses_nat_loss_with_negatives_only_for_nat(monkeypatch, with_negatives):
    calls = _spy(monkeypatch, "nat_loss")
    x, y = nat.shape_classes(2, size=32, generator=torch.Generator().manual_seed(0))
    transform = nat.transforms.build("jigsaw:grid=2") if with_negatives else None
    model = nat.train_classifier(x, y, negative_transform=transform, steps=3, batch_size=4, width=4, seed=0)
    assert len(calls) == 3 and not model.training
    for args, kwargs in calls:
        logits, targets = args
        mask = kwargs["negative_mask"]
        if with_negatives:
            assert logits.shape == (8, 10) and mask.tolist() == [False] * 4 + [True] * 4
            assert (targets[4:] == -1).all()
        else:
            assert logits.shape == (4, 10) and mask is None


@pytest.mark.parametrize("use_negatives", [False, True])
def test_gan_1d_feeds_negatives_only_to_nat_gan(monkeypatch, use_negatives):
    calls = _spy(monkeypatch, "nat_gan_discriminator_loss")
    curve = nat.train_gan_1d(use_negatives=use_negatives, steps=5, batch=8, eval_every=2, seed=0, n_eval=50)
    assert len(calls) == 5
    for args, _ in calls:
        real, labels, fake, neg = args
        assert real.shape == fake.shape == (8, 2)
        assert (neg is not None) == use_negatives
    assert curve["steps"] == [0, 2, 4, 5]
    assert len(curve["w1"]) == len(curve["negative_share"]) == 4
    assert all(w >= 0 for w in curve["w1"]) and all(0 <= s <= 1 for s in curve["negative_share"])
    assert curve["samples"].shape == (50,)


def test_late_average_and_config_validation():
    assert nat._late([9.0, 1.0, 2.0, 3.0, 4.0]) == 4.0  # step 0 excluded, last quarter of 4 = 1 point
    assert nat._late([9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == 7.5
    with pytest.raises(ValueError, match="--thresholds"):
        nat.NatConfig(thresholds=(0.5, 1.0)).validate()
    with pytest.raises(ValueError, match="--transform"):
        nat.NatConfig(transform="no_such_transform").validate()
    with pytest.raises(ValueError, match="--gan-steps"):
        nat.NatConfig(gan_steps=0).validate()


@pytest.mark.slow
def test_cli_nat_quick_outputs(tmp_path):
    out = tmp_path / "nat"
    result = CliRunner().invoke(main, ["demo", "nat", "--quick", "--out", str(out), "--seeds", "3",
                                       "--thresholds", "0.5,0.95"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["demo"] == "nat" and data["seeds"] == [3] and data["thresholds"] == [0.5, 0.95]
    assert data["settings"]["steps"] == nat.QUICK["steps"]
    for name in nat.RUNS:
        entry = data["classifier"][name]
        assert 0.0 <= entry["accuracy"] <= 1.0
        assert set(entry["ncr"]) == set(nat.NEGATIVE_SETS)
        for per_set in entry["ncr"].values():
            assert set(per_set) == {"0.5", "0.95"}
            assert per_set["0.95"] <= per_set["0.5"]  # a higher threshold can only lower the rate
    for name in nat.GAN_RUNS:
        entry = data["gan_1d"]["runs"][name]
        assert entry["late_w1"] >= 0
        assert entry["per_seed"][0]["steps"][-1] == nat.QUICK["gan_steps"]
    for png in ("gan_1d.png", "sets.png"):
        assert (out / png).read_bytes()[:8] == PNG_SIGNATURE
    table = (out / "table.txt").read_text()
    assert table.strip() in result.output
    assert "t=0.95" in table and "NAT-GAN" not in table and "nat_gan" in table


def test_cli_nat_never_overwrites_and_failed_run_leaves_no_folder(tmp_path, monkeypatch):
    out = tmp_path / "nat"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    result = CliRunner().invoke(main, ["demo", "nat", "--quick", "--out", str(out), "--gan-steps", "4",
                                       "--eval-every", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "keep.txt").read_text() == "previous run"
    assert (tmp_path / "nat-2" / "results.json").is_file()

    def boom(*args, **kwargs):
        raise RuntimeError("training failed")

    monkeypatch.setattr(nat, "train_classifier", boom)
    failed = tmp_path / "failed"
    result = CliRunner().invoke(main, ["demo", "nat", "--quick", "--out", str(failed)])
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert not failed.exists()


def test_cli_nat_bad_flags():
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "nat", "--thresholds", "0.5,1.5"])
    assert result.exit_code == 2 and "--thresholds" in result.output
    result = runner.invoke(main, ["demo", "nat", "--quick", "--transform", "nope", "--out", "unused"])
    assert result.exit_code == 2 and "--transform" in result.output
    assert not Path("unused").exists()


def test_cli_nat_help_documents_every_flag():
    from nda_plugins.cli.demo import nat as nat_cmd

    result = CliRunner().invoke(main, ["demo", "nat", "--help"])
    assert result.exit_code == 0, result.output
    for param in nat_cmd.params:
        assert param.help, param.name
        for opt in param.opts:
            assert opt in result.output, opt
    assert "nat" in CliRunner().invoke(main, ["demo", "--help"]).output
