"""Tests for nda_plugins.contrastive against a slow, obviously correct reference with Python loops."""

from __future__ import annotations

import math

import pytest
import torch

from nda_plugins.contrastive import info_nce_logits, nda_info_nce, nda_info_nce_dense


def _unit(v):
    return [x / math.sqrt(sum(y * y for y in v)) for x in v] if v else v


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def reference_info_nce(query, positive, negatives, nda, *, temperature, nda_weight=None, normalize=True):
    """Per-query loss written from the formula, one query and one key at a time (Python floats).

    negatives: list of shared keys, or None for in-batch (every other positive);
    nda: per-query list of NDA keys, or None.
    """
    q_rows, p_rows = query.tolist(), positive.tolist()
    neg_rows = None if negatives is None else negatives.tolist()
    nda_rows = None if nda is None else nda.tolist()
    if normalize:
        q_rows, p_rows = [_unit(r) for r in q_rows], [_unit(r) for r in p_rows]
        neg_rows = None if neg_rows is None else [_unit(r) for r in neg_rows]
        nda_rows = None if nda_rows is None else [[_unit(r) for r in rows] for rows in nda_rows]
    w = 1.0 if nda_weight is None else nda_weight
    losses = []
    for i, q in enumerate(q_rows):
        pos = math.exp(_dot(q, p_rows[i]) / temperature)
        if neg_rows is None:
            others = [p_rows[j] for j in range(len(p_rows)) if j != i]
        else:
            others = neg_rows
        denom = pos + sum(math.exp(_dot(q, k) / temperature) for k in others)
        if nda_rows is not None:
            denom += w * sum(math.exp(_dot(q, k) / temperature) for k in nda_rows[i])
        losses.append(-math.log(pos / denom))
    return losses


def _data(seed, b=5, k=7, m=3, d=4):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(b, d), r(b, d), r(k, d), r(b, m, d)


@pytest.mark.parametrize("use_queue", [True, False])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_plain_info_nce_matches_reference(use_queue, normalize, temperature):
    q, p, queue, _ = _data(0)
    queue = queue if use_queue else None
    got = nda_info_nce(q, p, queue, temperature=temperature, normalize=normalize, reduction="none")
    expected = reference_info_nce(q, p, queue, None, temperature=temperature, normalize=normalize)
    assert got.tolist() == pytest.approx(expected, rel=1e-10)
    mean = nda_info_nce(q, p, queue, temperature=temperature, normalize=normalize)
    assert mean.item() == pytest.approx(sum(expected) / len(expected), rel=1e-10)


@pytest.mark.parametrize("use_queue", [True, False])
@pytest.mark.parametrize("nda_weight", [None, 1.0, 0.3])
def test_nda_info_nce_matches_reference(use_queue, nda_weight):
    q, p, queue, nda = _data(1)
    queue = queue if use_queue else None
    got = nda_info_nce(q, p, queue, nda, temperature=0.2, nda_weight=nda_weight, reduction="none")
    expected = reference_info_nce(q, p, queue, nda, temperature=0.2, nda_weight=nda_weight)
    assert got.tolist() == pytest.approx(expected, rel=1e-10)
    plain = reference_info_nce(q, p, queue, None, temperature=0.2)
    assert all(a > b for a, b in zip(got.tolist(), plain))  # extra negatives raise every loss


def test_zero_weight_drops_nda_keys():
    q, p, queue, nda = _data(2)
    torch.testing.assert_close(
        nda_info_nce(q, p, queue, nda, temperature=0.1, nda_weight=0.0), nda_info_nce(q, p, queue, temperature=0.1)
    )


def test_logits_layout():
    q, p, queue, nda = _data(3)
    logits, targets = info_nce_logits(q, p, queue, nda, temperature=0.5)
    assert logits.shape == (5, 1 + 7 + 3) and targets.tolist() == [0] * 5
    logits, targets = info_nce_logits(q, p, None, nda, temperature=0.5)
    assert logits.shape == (5, 5 + 3) and targets.tolist() == list(range(5))


def test_gradients_reach_query_and_nda_keys():
    q, p, queue, nda = (t.requires_grad_() for t in _data(4))
    nda_info_nce(q, p, queue, nda, temperature=0.1).backward()
    assert q.grad.abs().sum() > 0 and nda.grad.abs().sum() > 0


def test_dense_matches_reference_over_positions():
    g = torch.Generator().manual_seed(5)
    b, n, m, d = 2, 3, 2, 4
    pred = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    target = torch.randn(b, n, d, generator=g, dtype=torch.float64)
    nda = torch.randn(b, n, m, d, generator=g, dtype=torch.float64)
    got = nda_info_nce_dense(pred, target, nda, temperature=1.0, nda_weight=0.5, reduction="none")
    assert got.shape == (b, n)
    # Reference: for position (i, s) every target (j, t) != (i, s) is a negative, plus its NDA keys.
    for i in range(b):
        for s in range(n):
            q = pred[i, s].tolist()
            pos = math.exp(_dot(q, target[i, s].tolist()))
            denom = sum(math.exp(_dot(q, target[j, t].tolist())) for j in range(b) for t in range(n))
            denom += 0.5 * sum(math.exp(_dot(q, k)) for k in nda[i, s].tolist())
            assert got[i, s].item() == pytest.approx(-math.log(pos / denom), rel=1e-10)
    plain = nda_info_nce_dense(pred, target, temperature=1.0)
    assert plain.item() < got.mean().item()


@pytest.mark.parametrize(
    "args, kwargs, exc, word",
    [
        ((torch.zeros(4, 3), torch.zeros(5, 3)), {}, ValueError, "positive_key"),
        ((torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(6, 2)), {}, ValueError, "negative_keys"),
        ((torch.zeros(4, 3), torch.zeros(4, 3), None, torch.zeros(3, 2, 3)), {}, ValueError, "nda_keys"),
        ((torch.zeros(4, 3), torch.zeros(4, 3), None, torch.zeros(4, 3)), {}, ValueError, "nda_keys"),
        ((torch.zeros(4), torch.zeros(4)), {}, ValueError, "query"),
        ((torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 3)), {}, TypeError, "query"),
        ((torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.float64)), {}, TypeError, "positive_key"),
        ((torch.zeros(4, 3), torch.zeros(4, 3)), {"temperature": 0.0}, ValueError, "temperature"),
        ((torch.zeros(4, 3), torch.zeros(4, 3)), {"nda_weight": 1.5}, ValueError, "nda_weight"),
        ((torch.zeros(4, 3), torch.zeros(4, 3)), {"reduction": "sum"}, ValueError, "reduction"),
    ],
)
def test_bad_input(args, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        nda_info_nce(*args, **kwargs)


def test_dense_bad_input():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="targets"):
        nda_info_nce_dense(x, torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="nda_keys"):
        nda_info_nce_dense(x, x, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="predictions"):
        nda_info_nce_dense(torch.zeros(6, 4), torch.zeros(6, 4))


def test_no_value_reads_on_meta_tensors():
    q, p, queue, nda = (torch.empty(*s, device="meta") for s in [(4, 3), (4, 3), (6, 3), (4, 2, 3)])
    assert nda_info_nce(q, p, queue, nda, temperature=0.1, nda_weight=0.5).device.type == "meta"
