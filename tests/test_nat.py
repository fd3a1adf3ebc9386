"""Tests for nda_plugins.nat: NAT loss, NAT-GAN discriminator loss, NCR."""

from __future__ import annotations

import math

import pytest
import torch

from nda_plugins.nat import kl_uniform, nat_gan_discriminator_loss, nat_loss, ncr


def _softmax_row(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    return [x / sum(e) for x in e]


def _ce(row, target):
    return -math.log(_softmax_row(row)[target])


def _kl_uniform(row):
    c = len(row)
    return sum((1 / c) * math.log((1 / c) / p) for p in _softmax_row(row))


def test_kl_uniform_reference_and_zero_at_uniform():
    logits = torch.tensor([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]], dtype=torch.float64)
    got = kl_uniform(logits)
    assert got[0].item() == pytest.approx(_kl_uniform([0.0, 1.0, 2.0]), rel=1e-12)
    assert got[1].item() == pytest.approx(0.0, abs=1e-12)


def test_nat_loss_is_share_weighted_sum_of_ce_and_kl():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    targets = torch.tensor([1, 3, 0, -1, 2, -1])  # negative rows may hold any target
    neg = torch.tensor([False, False, False, True, False, True])
    rows = logits.tolist()
    pos_terms = [_ce(rows[i], int(targets[i])) for i in range(6) if not neg[i]]
    neg_terms = [_kl_uniform(rows[i]) for i in range(6) if neg[i]]
    expected = (4 / 6) * (sum(pos_terms) / 4) + (2 / 6) * (sum(neg_terms) / 2)
    assert nat_loss(logits, targets, negative_mask=neg).item() == pytest.approx(expected, rel=1e-12)
    per = nat_loss(logits, targets, negative_mask=neg, reduction="none")
    assert per.shape == (6,)
    assert per[~neg].tolist() == pytest.approx(pos_terms, rel=1e-12)
    assert per[neg].tolist() == pytest.approx(neg_terms, rel=1e-12)
    assert nat_loss(logits, targets, negative_mask=neg, reduction="sum").item() == pytest.approx(expected * 6)


def test_nat_loss_without_negatives_is_cross_entropy():
    logits = torch.randn(5, 3, dtype=torch.float64)
    targets = torch.tensor([0, 2, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(logits, targets)
    torch.testing.assert_close(nat_loss(logits, targets, negative_mask=None), expected)
    torch.testing.assert_close(nat_loss(logits, targets, negative_mask=torch.zeros(5, dtype=torch.bool)), expected)


def test_nat_loss_gradient_on_negatives_points_to_uniform():
    logits = torch.tensor([[3.0, 0.0, 0.0]], requires_grad=True)
    nat_loss(logits, torch.tensor([-1]), negative_mask=torch.tensor([True])).backward()
    assert logits.grad[0, 0] > 0 and logits.grad[0, 1] < 0  # descent lowers the confident logit


@pytest.mark.parametrize(
    "logits, targets, mask, exc, word",
    [
        (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), None, ValueError, "targets"),
        (
            torch.zeros(4, 3),
            torch.zeros(4, dtype=torch.long),
            torch.zeros(3, dtype=torch.bool),
            ValueError,
            "negative_mask",
        ),
        (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(4), TypeError, "negative_mask"),
        (torch.zeros(4, 3), torch.zeros(4), None, TypeError, "targets"),
        (torch.zeros(4), torch.zeros(4, dtype=torch.long), None, ValueError, "logits"),
        (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), None, ValueError, "logits"),
    ],
)
def test_nat_loss_bad_input(logits, targets, mask, exc, word):
    with pytest.raises(exc, match=word):
        nat_loss(logits, targets, negative_mask=mask)


def test_nat_gan_discriminator_loss():
    g = torch.Generator().manual_seed(1)
    real, fake, neg = (torch.randn(n, 5, generator=g, dtype=torch.float64) for n in (3, 4, 2))
    labels = torch.tensor([4, 0, 2])
    r, f, n = real.tolist(), fake.tolist(), neg.tolist()
    expected = (sum(_ce(r[i], int(labels[i])) for i in range(3)) + sum(map(_kl_uniform, f + n))) / 9
    assert nat_gan_discriminator_loss(real, labels, fake, neg).item() == pytest.approx(expected, rel=1e-12)
    without = (sum(_ce(r[i], int(labels[i])) for i in range(3)) + sum(map(_kl_uniform, f))) / 7
    assert nat_gan_discriminator_loss(real, labels, fake).item() == pytest.approx(without, rel=1e-12)
    with pytest.raises(ValueError, match="real_labels"):
        nat_gan_discriminator_loss(real, labels[:2], fake)
    with pytest.raises(ValueError, match="neg_logits"):
        nat_gan_discriminator_loss(real, labels, fake, torch.zeros(2, 4, dtype=torch.float64))


def test_ncr_hand_computed():
    # top softmax probabilities: 1/3, ~0.9999, e^2/(e^2+2) ~ 0.787, 0.5
    logits = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 1.0, -50.0]])
    assert ncr(logits, 0.5).item() == 0.5
    assert ncr(logits, 0.8).item() == 0.25
    assert ncr(logits, 0.3).item() == 1.0
    with pytest.raises(ValueError, match="threshold"):
        ncr(logits, 1.0)
    with pytest.raises(TypeError, match="threshold"):
        ncr(logits, torch.tensor(0.5))


def test_no_value_reads_on_meta_tensors():
    logits = torch.empty(4, 3, device="meta")
    targets = torch.empty(4, dtype=torch.long, device="meta")
    mask = torch.empty(4, dtype=torch.bool, device="meta")
    assert nat_loss(logits, targets, negative_mask=mask).device.type == "meta"
    assert ncr(logits, 0.5).device.type == "meta"
