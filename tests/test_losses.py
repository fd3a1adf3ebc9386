"""Tests for nda_plugins.losses: NDA discriminator objectives, the replace estimator, conditioning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nda_plugins.losses import (
    KINDS,
    anda_weight,
    conditional_pairs,
    discriminator_loss,
    fake_side_loss,
    generator_loss,
    negative_labels,
    nda_weight_from_lambda,
    real_loss,
    replace_fakes,
    select_replaced,
)

# Per-element terms written out independently of the library (real, fake, generator).
REFERENCE = {
    "logistic": (lambda x: -F.logsigmoid(x), lambda x: -F.logsigmoid(-x), lambda x: -F.logsigmoid(x)),
    "bce": (
        lambda x: F.binary_cross_entropy(torch.sigmoid(x), torch.ones_like(x), reduction="none"),
        lambda x: F.binary_cross_entropy(torch.sigmoid(x), torch.zeros_like(x), reduction="none"),
        lambda x: F.binary_cross_entropy(torch.sigmoid(x), torch.ones_like(x), reduction="none"),
    ),
    "hinge": (lambda x: torch.clamp(1 - x, min=0), lambda x: torch.clamp(1 + x, min=0), lambda x: -x),
    "lsgan": (lambda x: (x - 1) ** 2, lambda x: x**2, lambda x: (x - 1) ** 2),
}


def _logits(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


# --------------------------------------------------------------------------------------------
# discriminator_loss / generator_loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_zero_weight_is_the_plain_loss_exactly(kind):
    real, fake = _logits(0, 8), _logits(1, 8)
    neg = torch.full((8,), float("nan"), dtype=torch.float64)  # must not leak in at w=0
    plain_real, plain_fake, _ = {
        "logistic": (F.softplus(-real), F.softplus(fake), None),
        "bce": (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real), reduction="none"),
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake), reduction="none"),
            None,
        ),
        "hinge": (F.relu(1.0 - real), F.relu(1.0 + fake), None),
        "lsgan": ((real - 1.0).square(), fake.square(), None),
    }[kind]
    expected = plain_real.mean() + plain_fake.mean()
    assert torch.equal(discriminator_loss(real, fake, nda_weight=0.0, kind=kind), expected)
    assert torch.equal(discriminator_loss(real, fake, neg, nda_weight=0, kind=kind), expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("w", [0.25, 0.75, 0.5])
def test_weighted_loss_matches_reference(kind, w):
    real, fake, neg = _logits(2, 5), _logits(3, 7), _logits(4, 3)  # batch sizes may differ
    r, f, _ = REFERENCE[kind]
    expected = r(real).mean() + (1 - w) * f(fake).mean() + w * f(neg).mean()
    got = discriminator_loss(real, fake, neg, nda_weight=w, kind=kind)
    assert got.shape == ()
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_split_terms_add_up_to_the_loss(kind, reduction):
    real, fake, neg = _logits(12, 6, 1), _logits(13, 6, 1), _logits(14, 6, 1)
    whole = discriminator_loss(real, fake, neg, nda_weight=0.4, kind=kind, reduction=reduction)
    parts = real_loss(real, kind=kind, reduction=reduction) + fake_side_loss(
        fake, neg, nda_weight=0.4, kind=kind, reduction=reduction
    )
    torch.testing.assert_close(parts, whole)
    plain = real_loss(real, kind=kind) + fake_side_loss(fake, nda_weight=0.0, kind=kind)
    assert torch.equal(plain, discriminator_loss(real, fake, nda_weight=0.0, kind=kind))
    with pytest.raises(ValueError, match="neg_logits"):
        fake_side_loss(fake, nda_weight=0.4, kind=kind)
    with pytest.raises(ValueError, match="batch size"):
        fake_side_loss(fake, neg[:3], nda_weight=0.4, reduction="none")


def test_hand_computed_hinge_and_lsgan():
    real = torch.tensor([0.0, 2.0])
    fake = torch.tensor([-1.0, 1.0])
    neg = torch.tensor([3.0])
    # hinge: real mean(1, 0)=0.5; fake mean(0, 2)=1; neg 4 -> 0.5 + 0.25*1 + 0.75*4
    assert discriminator_loss(real, fake, neg, nda_weight=0.75, kind="hinge").item() == 3.75
    # lsgan: real mean(1, 1)=1; fake mean(1, 1)=1; neg 9 -> 1 + 0.25 + 6.75
    assert discriminator_loss(real, fake, neg, nda_weight=0.75, kind="lsgan").item() == 8.0
    # logistic at 0: log 2 for each term
    zero = torch.zeros(3, dtype=torch.float64)
    got = discriminator_loss(zero, zero, zero, nda_weight=0.5).item()
    assert got == pytest.approx(2 * math.log(2.0), abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_reduction_none_and_sum_on_patch_outputs(kind):
    real, fake, neg = _logits(5, 4, 1, 3, 3), _logits(6, 4, 1, 3, 3), _logits(7, 4, 1, 3, 3)
    per = discriminator_loss(real, fake, neg, nda_weight=0.3, kind=kind, reduction="none")
    assert per.shape == (4,)
    r, f, _ = REFERENCE[kind]
    expected = (
        r(real).mean(dim=(1, 2, 3)) + 0.7 * f(fake).mean(dim=(1, 2, 3)) + 0.3 * f(neg).mean(dim=(1, 2, 3))
    )
    torch.testing.assert_close(per, expected)
    torch.testing.assert_close(per.mean(), discriminator_loss(real, fake, neg, nda_weight=0.3, kind=kind))
    torch.testing.assert_close(
        discriminator_loss(real, fake, neg, nda_weight=0.3, kind=kind, reduction="sum"), expected.sum()
    )


@pytest.mark.parametrize("kind", KINDS)
def test_generator_loss(kind):
    fake = _logits(8, 6, 1)
    _, _, g = REFERENCE[kind]
    torch.testing.assert_close(generator_loss(fake, kind=kind), g(fake).mean())
    torch.testing.assert_close(generator_loss(fake, kind=kind, reduction="none"), g(fake)[:, 0])


def test_gradients_flow_to_every_term():
    real, fake, neg = (_logits(s, 4).requires_grad_() for s in (9, 10, 11))
    discriminator_loss(real, fake, neg, nda_weight=0.5).backward()
    for t in (real, fake, neg):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_no_value_reads_on_meta_tensors():
    """Meta tensors have no values: any check that reads one (a device sync on GPU) would fail."""
    real, fake, neg = (torch.empty(4, 1, device="meta") for _ in range(3))
    assert discriminator_loss(real, fake, neg, nda_weight=0.5, kind="hinge").device.type == "meta"
    fake, neg = torch.empty(4, 3, device="meta"), torch.empty(4, 3, device="meta")
    mixed, replaced = replace_fakes(fake, neg, nda_weight=0.5)
    assert mixed.shape == (4, 3) and replaced.shape == (4,)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(nda_weight=1.0), ValueError, "nda_weight"),
        (dict(nda_weight=-0.1), ValueError, "nda_weight"),
        (dict(nda_weight=True), TypeError, "nda_weight"),
        (dict(nda_weight=torch.tensor(0.5)), TypeError, "nda_weight"),
        (dict(nda_weight=0.5, kind="wgan"), ValueError, "kind"),
        (dict(nda_weight=0.5, reduction="max"), ValueError, "reduction"),
    ],
)
def test_bad_arguments(kwargs, exc, word):
    x = torch.zeros(4)
    with pytest.raises(exc, match=word):
        discriminator_loss(x, x, x, **kwargs)


def test_bad_tensors():
    x = torch.zeros(4)
    with pytest.raises(ValueError, match="neg_logits"):
        discriminator_loss(x, x, nda_weight=0.5)
    with pytest.raises(TypeError, match="real_logits"):
        discriminator_loss(torch.zeros(4, dtype=torch.long), x, x, nda_weight=0.5)
    with pytest.raises(TypeError, match="fake_logits"):
        discriminator_loss(x, [0.0] * 4, x, nda_weight=0.5)
    with pytest.raises(ValueError, match="real_logits"):
        discriminator_loss(torch.tensor(0.0), x, x, nda_weight=0.5)
    with pytest.raises(ValueError, match="batch size"):
        discriminator_loss(x, torch.zeros(3), x, nda_weight=0.5, reduction="none")
    with pytest.raises(ValueError, match="kind"):
        generator_loss(x, kind="softplus")


def test_weight_conventions():
    assert nda_weight_from_lambda(0.25) == 0.75  # the NDA paper's best CIFAR-10 setting
    assert nda_weight_from_lambda(1.0) == 0.0  # lambda=1: plain GAN
    assert anda_weight(0.5, 0.0) == 0.5 and anda_weight(0.5, 1.0) == 0.0
    assert anda_weight(0.8, 0.25) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="lam"):
        nda_weight_from_lambda(0.0)
    with pytest.raises(ValueError, match="alpha"):
        anda_weight(0.5, 1.5)
    with pytest.raises(ValueError, match="lam"):
        anda_weight(1.0, 0.0)


# --------------------------------------------------------------------------------------------
# replace_fakes
# --------------------------------------------------------------------------------------------


def test_replace_fakes_rows_and_mask():
    fake = torch.arange(24.0).reshape(8, 3)
    neg = -torch.arange(24.0).reshape(8, 3) - 1
    fake_before, neg_before = fake.clone(), neg.clone()
    mixed, replaced = replace_fakes(fake, neg, nda_weight=0.5, generator=torch.Generator().manual_seed(3))
    assert replaced.dtype == torch.bool and replaced.shape == (8,)
    assert 0 < int(replaced.sum()) < 8  # seed chosen so both kinds of rows occur
    assert torch.equal(mixed[replaced], neg[replaced])
    assert torch.equal(mixed[~replaced], fake[~replaced])
    assert torch.equal(fake, fake_before) and torch.equal(neg, neg_before)
    again, again_mask = replace_fakes(fake, neg, nda_weight=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(again, mixed) and torch.equal(again_mask, replaced)


def test_replace_fakes_zero_weight_keeps_every_fake():
    fake, neg = torch.randn(16, 2, 4, 4), torch.randn(16, 2, 4, 4)
    mixed, replaced = replace_fakes(fake, neg, nda_weight=0.0)
    assert not replaced.any() and torch.equal(mixed, fake)


def test_replace_fakes_rate():
    n, w = 20000, 0.3
    gen = torch.Generator().manual_seed(0)
    _, replaced = replace_fakes(torch.zeros(n), torch.ones(n), nda_weight=w, generator=gen)
    # Binomial(n, w): std of the rate is sqrt(w(1-w)/n) ~ 0.0032; allow 5 std.
    assert abs(replaced.double().mean().item() - w) < 5 * math.sqrt(w * (1 - w) / n)


@pytest.mark.parametrize("kind", KINDS)
def test_replace_and_weighted_estimators_agree_in_expectation(kind):
    """Given fixed fake/negative batches, E[replace loss] equals the weighted loss exactly.

    We average the replace estimator over many independent coin draws and require the gap to be
    within 5 standard errors of the Monte-Carlo mean (false alarm ~6e-7), and also check that a
    wrong weight (w + 0.1) is rejected by the same criterion, so the test can fail.
    """
    w, batch, draws = 0.6, 32, 4000
    real, fake, neg = _logits(20, batch), _logits(21, batch) + 1.0, _logits(22, batch) - 1.0
    weighted = discriminator_loss(real, fake, neg, nda_weight=w, kind=kind).item()
    # `draws` independent replace draws at once: row r*batch + i is sample i of draw r
    mixed, _ = replace_fakes(
        fake.repeat(draws), neg.repeat(draws), nda_weight=w, generator=torch.Generator().manual_seed(1)
    )
    per_row = discriminator_loss(real.repeat(draws), mixed, nda_weight=0.0, kind=kind, reduction="none")
    samples = per_row.view(draws, batch).mean(dim=1)  # the replace estimator's loss, per draw
    mean, se = samples.mean().item(), samples.std().item() / math.sqrt(draws)
    assert abs(mean - weighted) < 5 * se
    wrong = discriminator_loss(real, fake, neg, nda_weight=w + 0.1, kind=kind).item()
    assert abs(mean - wrong) > 5 * se


def test_replace_fakes_bad_input():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="negatives"):
        replace_fakes(x, torch.zeros(5, 3), nda_weight=0.5)
    with pytest.raises(TypeError, match="negatives"):
        replace_fakes(x, torch.zeros(4, 3, dtype=torch.float64), nda_weight=0.5)
    with pytest.raises(ValueError, match="nda_weight"):
        replace_fakes(x, x, nda_weight=1.5)
    with pytest.raises(TypeError, match="generator"):
        replace_fakes(x, x, nda_weight=0.5, generator=0)


# --------------------------------------------------------------------------------------------
# Conditional discriminators
# --------------------------------------------------------------------------------------------


def test_select_replaced_mixes_labels_like_rows():
    fake_labels, neg_labels = torch.tensor([0, 1, 2, 3]), torch.tensor([9, 8, 7, 6])
    mask = torch.tensor([True, False, False, True])
    assert select_replaced(mask, fake_labels, neg_labels).tolist() == [9, 1, 2, 6]
    onehot = select_replaced(mask, torch.zeros(4, 3), torch.ones(4, 3))
    assert onehot.sum(dim=1).tolist() == [3.0, 0.0, 0.0, 3.0]
    with pytest.raises(ValueError, match="replaced"):
        select_replaced(torch.tensor([True, False]), fake_labels, neg_labels)
    with pytest.raises(TypeError, match="replaced"):
        select_replaced(torch.ones(4), fake_labels, neg_labels)
    with pytest.raises(ValueError, match="replacements"):
        select_replaced(mask, fake_labels, torch.zeros(4, 2))


def test_negative_labels():
    labels = torch.tensor([3, 1, 4])
    same = negative_labels(labels)
    assert torch.equal(same, labels) and same.data_ptr() != labels.data_ptr()
    assert negative_labels(labels, label=7).tolist() == [7, 7, 7]
    assert negative_labels(None) is None
    cond = torch.eye(3)
    fixed = negative_labels(cond, label=torch.tensor([0.0, 0.0, 1.0]))
    assert fixed.shape == (3, 3) and fixed[:, 2].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="label"):
        negative_labels(cond, label=torch.zeros(4))
    with pytest.raises(TypeError, match="label"):
        negative_labels(cond, label=2)
    with pytest.raises(ValueError, match="label"):
        negative_labels(labels, label=-1)


def test_conditional_pairs_for_pix2pix():
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8)
    pair = conditional_pairs(a, b)
    assert pair.shape == (2, 4, 8, 8)
    assert torch.equal(pair[:, :3], a) and torch.equal(pair[:, 3:], b)
    with pytest.raises(ValueError, match="target"):
        conditional_pairs(a, torch.randn(2, 1, 8, 4))
    with pytest.raises(ValueError, match="dim"):
        conditional_pairs(a, b, dim=0)


# --------------------------------------------------------------------------------------------
# The NDA optimum on a 1-D toy problem
# --------------------------------------------------------------------------------------------


def test_toy_discriminator_reaches_the_nda_optimum():
    """A histogram discriminator trained with the NDA logistic loss reaches the NDA paper's optimum.

    D has one logit per bin, so the minimiser of the loss is, per bin b,
    sigmoid(l_b) = P_data(b) / (P_data(b) + (1-w) P_G(b) + w P_NDA(b)), P the bin masses: the
    empirical ones for the loss on our samples (checked to 1e-4: optimisation error only), the
    exact ones (normal CDF) in expectation. Tolerance for the latter: on bins holding >= 2% of
    p_data (>= 600 of the 30k samples), the largest sampling deviation over 300 seeds was 0.032
    (mean 0.014, std 0.004), so 0.05 is > 9 std above the mean; the plain-GAN optimum (w=0)
    differs by ~0.7 there (asserted), so the test rejects a loss that ignores the negatives.
    """
    gen = torch.Generator().manual_seed(0)
    n, w, bins, lo, hi = 30_000, 0.5, 24, -3.0, 3.0
    dists = {"data": (0.0, 1.0), "gen": (1.5, 1.0), "nda": (-1.5, 0.7)}
    width = (hi - lo) / bins
    samples = {k: m + s * torch.randn(n, generator=gen, dtype=torch.float64) for k, (m, s) in dists.items()}
    idx = {k: ((x - lo) / width).floor().clamp(0, bins - 1).long() for k, x in samples.items()}
    logits = torch.zeros(bins, dtype=torch.float64, requires_grad=True)
    # The loss is convex and separable in the bin logits: L-BFGS converges in a few dozen
    # evaluations (Adam needs hundreds of steps, too slow for a unit test).
    opt = torch.optim.LBFGS(
        [logits], lr=1.0, max_iter=100, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = discriminator_loss(
            logits[idx["data"]], logits[idx["gen"]], logits[idx["nda"]], nda_weight=w, kind="logistic"
        )
        loss.backward()
        return loss

    opt.step(closure)
    trained = torch.sigmoid(logits.detach())

    counts = {k: torch.bincount(v, minlength=bins).double() / n for k, v in idx.items()}
    empirical = counts["data"] / (counts["data"] + (1 - w) * counts["gen"] + w * counts["nda"])

    edges = lo + width * torch.arange(bins + 1, dtype=torch.float64)
    edges[0], edges[-1] = -math.inf, math.inf  # the end bins hold the clamped tails

    def mass(mean, std):
        cdf = torch.special.ndtr((edges - mean) / std)
        return cdf[1:] - cdf[:-1]

    p_data, p_gen, p_nda = (mass(*dists[k]) for k in ("data", "gen", "nda"))
    optimum = p_data / (p_data + (1 - w) * p_gen + w * p_nda)
    plain = p_data / (p_data + p_gen)
    compared = p_data >= 0.02
    assert compared.sum() >= 12
    assert (trained - empirical).abs().max() < 1e-4
    assert (trained - optimum)[compared].abs().max() < 0.05
    assert (plain - optimum)[compared].abs().max() > 0.5
