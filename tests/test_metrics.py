"""Tests for nda_plugins.metrics: AUROC (Mann-Whitney with ties), D-gap histogram, NCR re-export."""

from __future__ import annotations

import itertools

import pytest
import torch

from nda_plugins import metrics, nat
from nda_plugins.metrics import auroc, d_gap


def _pairwise_auroc(a, b):
    """P(in > out) + P(tie)/2 over all pairs, by brute force."""
    wins = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in itertools.product(a, b))
    return wins / (len(a) * len(b))


@pytest.mark.parametrize(
    "scores_in, scores_out, expected",
    [
        ([3.0, 2.0], [2.0, 1.0], 3.5 / 4),  # pairs: 3>2, 3>1, 2=2 (1/2), 2>1
        ([1.0, 1.0], [1.0], 0.5),  # all ties
        ([5.0, 6.0], [1.0, 2.0, 3.0], 1.0),  # perfect separation
        ([0.0], [1.0, 2.0], 0.0),  # perfectly wrong
        ([1.0, 3.0, 3.0], [3.0, 2.0], 3.0 / 6),  # 1 vs (3, 2): 0 + 0; each 3 vs (3, 2): 0.5 + 1
    ],
)
def test_auroc_hand_computed(scores_in, scores_out, expected):
    got = auroc(torch.tensor(scores_in), torch.tensor(scores_out))
    assert got.dtype == torch.float64 and got.shape == ()
    assert got.item() == pytest.approx(expected, abs=1e-15)
    assert got.item() == pytest.approx(_pairwise_auroc(scores_in, scores_out), abs=1e-15)


def test_auroc_matches_brute_force_with_many_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (40,), generator=g).float()
    b = torch.randint(0, 5, (33,), generator=g).float()
    assert auroc(a, b).item() == pytest.approx(_pairwise_auroc(a.tolist(), b.tolist()), abs=1e-12)
    assert auroc(a, b).item() + auroc(b, a).item() == pytest.approx(1.0)
    assert auroc(a.reshape(4, 10), b).item() == auroc(a, b).item()  # flattened


def test_auroc_bad_input():
    with pytest.raises(ValueError, match="scores_out"):
        auroc(torch.ones(3), torch.ones(0))
    with pytest.raises(TypeError, match="scores_in"):
        auroc([1.0], torch.ones(1))
    with pytest.raises(TypeError, match="scores_in"):
        auroc(torch.ones(2, dtype=torch.bool), torch.ones(1))


def test_d_gap_hand_computed():
    d_real = torch.tensor([1.0, 2.0, 3.0, 4.0])
    d_neg = torch.tensor([1.0, 1.5, 1.0, 0.0])
    r = d_gap(d_real, d_neg, bins=4)  # gaps 0, 0.5, 2, 4 over [0, 4]: edges 0, 1, 2, 3, 4
    assert r.gap.tolist() == [0.0, 0.5, 2.0, 4.0]
    assert r.mean.item() == 1.625
    assert r.edges.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert r.counts.tolist() == [2.0, 0.0, 1.0, 1.0]  # 4 falls in the last, closed bin
    fixed = d_gap(d_real, d_neg, bins=2, range=(-1.0, 1.0))  # 2 and 4 are out of range
    assert fixed.edges.tolist() == [-1.0, 0.0, 1.0] and fixed.counts.tolist() == [0.0, 2.0]


def test_d_gap_constant_and_patch_inputs():
    r = d_gap(torch.ones(3), torch.zeros(3), bins=4)  # constant gap 1: histc widens to [0, 2]
    assert r.edges.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert r.counts.tolist() == [0.0, 0.0, 3.0, 0.0]
    patch = d_gap(torch.ones(2, 1, 2, 2), torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2))
    assert patch.gap.tolist() == [1.0, 0.0]


def test_d_gap_bad_input():
    with pytest.raises(ValueError, match="d_neg"):
        d_gap(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="bins"):
        d_gap(torch.ones(3), torch.ones(3), bins=0)
    with pytest.raises(ValueError, match="range"):
        d_gap(torch.ones(3), torch.ones(3), range=(1.0, 1.0))
    with pytest.raises(TypeError, match="d_real"):
        d_gap(torch.ones(3, dtype=torch.long), torch.ones(3))


def test_ncr_is_reexported():
    assert metrics.ncr is nat.ncr
