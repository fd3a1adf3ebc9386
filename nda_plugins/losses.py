"""GAN objectives with negative data augmentation (NDA).

One convention for the weights (see ``DESIGN.md`` §2): ``nda_weight`` ``w`` in ``[0, 1)`` is the
share of the discriminator's fake side that is negatives, so the fake-side expectation is
``(1 - w) * E_G[.] + w * E_NDA[.]``. The NDA paper's ``lambda * G + (1 - lambda) * P_bar`` is
``w = 1 - lambda``; ANDA's ``lambda * (1 - alpha)`` on the negatives is ``w = lambda * (1 - alpha)``.

Two estimators of the same objective:

* **weighted** -- :func:`discriminator_loss` with ``neg_logits``: a separate negative term, one
  extra discriminator pass on the negatives.
* **replace** -- :func:`replace_fakes` swaps each fake row for a negative with probability ``w``
  before the usual discriminator pass; then call :func:`discriminator_loss` with
  ``nda_weight=0``. No extra compute; same loss in expectation.

Example:
    >>> import torch
    >>> real, fake, neg = torch.randn(4), torch.randn(4), torch.randn(4)
    >>> loss = discriminator_loss(real, fake, neg, nda_weight=0.75, kind="hinge")
    >>> loss.shape
    torch.Size([])

All functions only look at shapes, dtypes and devices of tensors (never their values), so no
check forces a host-device synchronisation.
"""

from __future__ import annotations

import numbers
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "KINDS",
    "anda_weight",
    "conditional_pairs",
    "discriminator_loss",
    "fake_side_loss",
    "generator_loss",
    "negative_labels",
    "nda_weight_from_lambda",
    "real_loss",
    "replace_fakes",
    "replace_mask",
    "select_replaced",
]

#: Loss kinds: ``logistic`` (non-saturating, StyleGAN2), ``hinge`` (BigGAN), ``bce`` (pix2pix's
#: ``vanilla`` GANLoss: binary cross-entropy on logits -- the same numbers as ``logistic``) and
#: ``lsgan`` (pix2pix's least squares with targets 1 / 0).
KINDS = ("logistic", "hinge", "bce", "lsgan")

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Per-element terms. Each maps raw discriminator outputs (logits) to a loss of the same shape.
# --------------------------------------------------------------------------------------------


def _logistic_real(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(-x)  # -log sigmoid(x)


def _logistic_fake(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x)  # -log(1 - sigmoid(x))


def _bce_real(x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none")


def _bce_fake(x: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")


def _hinge_real(x: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - x)


def _hinge_fake(x: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 + x)


def _lsgan_real(x: torch.Tensor) -> torch.Tensor:
    return (x - 1.0).square()


def _lsgan_fake(x: torch.Tensor) -> torch.Tensor:
    return x.square()


_Term = Callable[[torch.Tensor], torch.Tensor]

# kind -> (D on real, D on fake/negative, G on fake)
_TERMS: dict[str, tuple[_Term, _Term, _Term]] = {
    "logistic": (_logistic_real, _logistic_fake, _logistic_real),
    "bce": (_bce_real, _bce_fake, _bce_real),
    "hinge": (_hinge_real, _hinge_fake, lambda x: -x),
    "lsgan": (_lsgan_real, _lsgan_fake, _lsgan_real),
}


# --------------------------------------------------------------------------------------------
# Argument checks (shapes, dtypes and Python numbers only: never a tensor's values)
# --------------------------------------------------------------------------------------------


def _check_tensor(
    name: str, x: object, *, floating: bool = True, min_dim: int = 1, nonempty: bool = False
) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (logits), got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (batch first), got shape "
            f"{tuple(x.shape)}"
        )
    if nonempty and x.numel() == 0:  # a mean over nothing would be a silent NaN
        raise ValueError(f"{name} must hold at least one value, got an empty tensor of shape {tuple(x.shape)}")
    return x


def _check_weight(name: str, w: object, *, high: float = 1.0, high_inclusive: bool = False) -> float:
    """A Python number in ``[0, high)`` (or ``[0, high]``). Tensors are refused: reading one syncs."""
    interval = f"[0, {high}{']' if high_inclusive else ')'}"
    if isinstance(w, bool) or not isinstance(w, numbers.Real):
        hint = " (pass float(w) for a tensor)" if isinstance(w, torch.Tensor) else ""
        raise TypeError(f"{name} must be a Python number in {interval}, got {type(w).__name__}{hint}")
    w = float(w)
    if not (0.0 <= w <= high if high_inclusive else 0.0 <= w < high):
        raise ValueError(f"{name} must be in {interval}, got {w}")
    return w


def _check_kind(kind: object) -> str:
    if kind not in _TERMS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]


def _check_reduction(reduction: object) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")
    return reduction  # type: ignore[return-value]


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the first: ``(B, ...) -> (B,)`` (patch discriminators)."""
    return x.reshape(x.shape[0], -1).mean(dim=1) if x.dim() > 1 else x


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a per-element loss: ``mean`` over all elements, ``sum`` of per-sample means."""
    if reduction == "mean":
        return x.mean()
    per_sample = _per_sample(x)
    return per_sample.sum() if reduction == "sum" else per_sample


# --------------------------------------------------------------------------------------------
# The papers' weights in our convention
# --------------------------------------------------------------------------------------------


def nda_weight_from_lambda(lam: float) -> float:
    """The NDA paper's ``lambda`` (share of *generated* samples, ``lambda*G + (1-lambda)*P_bar``) as ``w``.

    ``w = 1 - lambda``; the paper's best CIFAR-10 setting ``lambda=0.25`` is ``w=0.75``.

    Args:
        lam: ``lambda`` in ``(0, 1]``.
    """
    lam = _check_weight("lam", lam, high=1.0, high_inclusive=True)
    if lam == 0.0:
        raise ValueError("lam must be in (0, 1] (lam=0 leaves no generated samples: w=1), got 0.0")
    return 1.0 - lam


def anda_weight(lam: float, alpha: float) -> float:
    """ANDA's negative share ``w = lambda * (1 - alpha)``.

    Args:
        lam: ANDA's ``lambda`` in ``[0, 1]``.
        alpha: the adaptive ``alpha`` in ``[0, 1]`` (:class:`nda_plugins.schedules.AdaptiveAlpha`).

    Raises:
        ValueError: out-of-range arguments, or ``lam=1`` with ``alpha=0`` (``w=1``: no fakes left).
    """
    lam = _check_weight("lam", lam, high=1.0, high_inclusive=True)
    alpha = _check_weight("alpha", alpha, high=1.0, high_inclusive=True)
    w = lam * (1.0 - alpha)
    if w >= 1.0:
        raise ValueError(f"lam * (1 - alpha) must be < 1, got lam={lam}, alpha={alpha}")
    return w


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    neg_logits: torch.Tensor | None = None,
    *,
    nda_weight: float,
    kind: str = "logistic",
    reduction: str = "mean",
) -> torch.Tensor:
    """Discriminator loss ``L_real + (1 - w) * L_fake + w * L_neg``.

    With ``nda_weight=0`` the result is the plain GAN loss ``L_real + L_fake`` bit for bit
    (``neg_logits`` is then ignored, even if it holds inf/NaN).

    Args:
        real_logits: ``(B, ...)`` raw discriminator outputs on real samples (``(B,)``, ``(B, 1)``
            or a patch map ``(B, 1, H, W)``).
        fake_logits: ``(B_f, ...)`` outputs on generated samples (same trailing shape not
            required: each term is averaged separately).
        neg_logits: ``(B_n, ...)`` outputs on negatives, required when ``nda_weight > 0``.
        nda_weight: ``w`` in ``[0, 1)``, the share of negatives on the fake side (a Python
            number; see the module docstring for the NDA / ANDA conversions).
        kind: one of :data:`KINDS`.
        reduction: ``"mean"`` (each term averaged over all its elements, result ``()``),
            ``"sum"`` (each term summed over samples after averaging within a sample) or
            ``"none"`` (per-sample ``(B,)`` losses; then all given logits must share ``B``).

    Returns:
        A scalar tensor, or ``(B,)`` for ``reduction="none"``.

    Raises:
        TypeError: a logit argument is not a floating tensor, or ``nda_weight`` not a number.
        ValueError: ``nda_weight`` outside ``[0, 1)``, ``neg_logits`` missing while
            ``nda_weight > 0``, an unknown ``kind``/``reduction``, a 0-d logit tensor, or
            mismatched batch sizes with ``reduction="none"``.
    """
    _check_tensor("real_logits", real_logits)
    _check_tensor("fake_logits", fake_logits)
    if reduction == "none" and real_logits.shape[0] != fake_logits.shape[0]:
        raise ValueError(
            f"reduction='none' needs the same batch size for real_logits ({real_logits.shape[0]}) and "
            f"fake_logits ({fake_logits.shape[0]})"
        )
    # The two halves below validate the rest (weight, kind, reduction, neg_logits).
    return real_loss(real_logits, kind=kind, reduction=reduction) + fake_side_loss(
        fake_logits, neg_logits, nda_weight=nda_weight, kind=kind, reduction=reduction
    )


def _fake_side(fake_logits, neg_logits, w, fake_term, reduction) -> torch.Tensor:
    fake = _reduce(fake_term(fake_logits), reduction)
    if w == 0.0:  # the plain loss, bit for bit
        return fake
    return (1.0 - w) * fake + w * _reduce(fake_term(neg_logits), reduction)


def real_loss(real_logits: torch.Tensor, *, kind: str = "logistic", reduction: str = "mean") -> torch.Tensor:
    """The real term of :func:`discriminator_loss` alone.

    For training loops that run the real and fake discriminator passes in separate phases
    (StyleGAN2-ADA's ``Dreal`` / ``Dgen``); ``real_loss + fake_side_loss`` equals
    :func:`discriminator_loss`.

    Args:
        real_logits: ``(B, ...)`` raw discriminator outputs on real samples.
        kind: one of :data:`KINDS`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``).
    """
    _check_tensor("real_logits", real_logits, nonempty=True)
    real_term, _, _ = _TERMS[_check_kind(kind)]
    return _reduce(real_term(real_logits), _check_reduction(reduction))


def fake_side_loss(
    fake_logits: torch.Tensor,
    neg_logits: torch.Tensor | None = None,
    *,
    nda_weight: float,
    kind: str = "logistic",
    reduction: str = "mean",
) -> torch.Tensor:
    """The fake side of :func:`discriminator_loss` alone: ``(1 - w) * L_fake + w * L_neg``.

    Args:
        fake_logits: ``(B_f, ...)`` outputs on generated samples.
        neg_logits: ``(B_n, ...)`` outputs on negatives; required when ``nda_weight > 0``.
        nda_weight: ``w`` in ``[0, 1)`` (a Python number); ``0`` gives ``L_fake`` bit for bit.
        kind: one of :data:`KINDS`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``; then ``B_f == B_n``).
    """
    _check_tensor("fake_logits", fake_logits, nonempty=True)
    w = _check_weight("nda_weight", nda_weight)
    _, fake_term, _ = _TERMS[_check_kind(kind)]
    reduction = _check_reduction(reduction)
    if neg_logits is not None:
        _check_tensor("neg_logits", neg_logits, nonempty=w > 0.0)
    elif w > 0.0:
        raise ValueError(f"neg_logits is required when nda_weight > 0 (got nda_weight={w})")
    if reduction == "none" and w > 0.0 and neg_logits.shape[0] != fake_logits.shape[0]:  # type: ignore[union-attr]
        raise ValueError(
            f"reduction='none' needs the same batch size for fake_logits ({fake_logits.shape[0]}) and "
            f"neg_logits ({neg_logits.shape[0]})"  # type: ignore[union-attr]
        )
    return _fake_side(fake_logits, neg_logits, w, fake_term, reduction)


def generator_loss(
    fake_logits: torch.Tensor, *, kind: str = "logistic", reduction: str = "mean"
) -> torch.Tensor:
    """Generator loss on the discriminator's outputs for generated samples.

    ``logistic``/``bce``: ``softplus(-D(G(z)))`` (non-saturating); ``hinge``: ``-D(G(z))``;
    ``lsgan``: ``(D(G(z)) - 1)^2``. NDA does not change the generator's objective.

    Args:
        fake_logits: ``(B, ...)`` raw discriminator outputs on generated samples.
        kind: one of :data:`KINDS`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``), as in
            :func:`discriminator_loss`.

    Returns:
        A scalar tensor, or ``(B,)`` for ``reduction="none"``.
    """
    _check_tensor("fake_logits", fake_logits, nonempty=True)
    _, _, g_term = _TERMS[_check_kind(kind)]
    return _reduce(g_term(fake_logits), _check_reduction(reduction))


# --------------------------------------------------------------------------------------------
# The replace estimator
# --------------------------------------------------------------------------------------------


def replace_fakes(
    fake: torch.Tensor,
    negatives: torch.Tensor,
    *,
    nda_weight: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each fake row by the matching negative row with probability ``nda_weight``.

    Example:
        >>> fake, neg = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
        >>> gen = torch.Generator().manual_seed(0)
        >>> mixed, replaced = replace_fakes(fake, neg, nda_weight=0.5, generator=gen)
        >>> mixed.shape, replaced.shape, replaced.dtype
        (torch.Size([4, 3, 8, 8]), torch.Size([4]), torch.bool)

    Feeding the result to the discriminator and using :func:`discriminator_loss` with
    ``nda_weight=0`` estimates the same expected loss as the weighted estimator, with no extra
    discriminator pass: ``E[mean_i f(D(mixed_i))] = (1 - w) mean_i f(D(fake_i)) + w mean_i
    f(D(neg_i))``. Gradients reach ``fake`` only through the rows that were kept.

    Args:
        fake: ``(B, ...)`` generated samples.
        negatives: ``(B, ...)`` negatives, same shape, dtype and device as ``fake``.
        nda_weight: replacement probability ``w`` in ``[0, 1)`` (a Python number).
        generator: ``torch.Generator`` on ``fake``'s device for the per-row coins; ``None``
            uses the global generator.

    Returns:
        ``(mixed, replaced)``: ``mixed`` shaped like ``fake`` (a new tensor), ``replaced`` a
        ``(B,)`` bool tensor, ``True`` where the row came from ``negatives``. Use
        :func:`select_replaced` to mix labels the same way.
    """
    _check_tensor("fake", fake, floating=False)
    _check_tensor("negatives", negatives, floating=False)
    w = _check_weight("nda_weight", nda_weight)
    if negatives.shape != fake.shape:
        raise ValueError(
            f"negatives must have the shape of fake {tuple(fake.shape)}, got {tuple(negatives.shape)}"
        )
    if negatives.dtype != fake.dtype or negatives.device != fake.device:
        raise TypeError(
            f"negatives must have fake's dtype and device ({fake.dtype}, {fake.device}), got "
            f"({negatives.dtype}, {negatives.device})"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    replaced = replace_mask(fake.shape[0], nda_weight=w, generator=generator, device=fake.device)
    return select_replaced(replaced, fake, negatives), replaced


def replace_mask(
    batch: int,
    *,
    nda_weight: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The coins of :func:`replace_fakes` alone: ``(batch,)`` bools, each ``True`` with probability ``w``.

    For training loops that make the fakes inside a module they cannot reach from outside (a
    ``DataParallel`` replica): draw the mask where the negatives are made, pass it in, and mix
    with :func:`select_replaced` there.

    Args:
        batch: number of rows (int >= 1).
        nda_weight: ``w`` in ``[0, 1)`` (a Python number).
        generator: ``torch.Generator`` on ``device``, or ``None`` (the global generator).
        device: where the mask lives (default: the generator's device, else the CPU).

    Returns:
        A ``(batch,)`` bool tensor.
    """
    if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    w = _check_weight("nda_weight", nda_weight)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return torch.rand(int(batch), generator=generator, device=device) < w


def select_replaced(
    replaced: torch.Tensor, kept: torch.Tensor, replacements: torch.Tensor
) -> torch.Tensor:
    """Rows of ``replacements`` where ``replaced`` is set, rows of ``kept`` elsewhere.

    Use it to mix anything row-aligned with the fakes (class labels, conditioning vectors,
    pix2pix conditions) with the mask :func:`replace_fakes` returned.

    Args:
        replaced: ``(B,)`` bool mask.
        kept: ``(B, ...)`` tensor (e.g. the generator's labels ``(B,)`` or ``(B, c_dim)``).
        replacements: tensor shaped like ``kept`` (e.g. the negatives' labels).

    Returns:
        A new tensor shaped like ``kept``.
    """
    _check_tensor("replaced", replaced, floating=False)
    _check_tensor("kept", kept, floating=False)
    _check_tensor("replacements", replacements, floating=False)
    if replaced.dtype != torch.bool or replaced.dim() != 1:
        raise TypeError(
            f"replaced must be a 1-d bool mask, got dtype {replaced.dtype} and shape "
            f"{tuple(replaced.shape)}"
        )
    if replacements.shape != kept.shape:
        raise ValueError(
            f"replacements must have the shape of kept {tuple(kept.shape)}, got "
            f"{tuple(replacements.shape)}"
        )
    if replaced.shape[0] != kept.shape[0]:
        raise ValueError(
            f"replaced has {replaced.shape[0]} rows but kept has batch size {kept.shape[0]}"
        )
    mask = replaced.reshape((-1,) + (1,) * (kept.dim() - 1))
    return torch.where(mask, replacements, kept)


# --------------------------------------------------------------------------------------------
# Conditional discriminators
# --------------------------------------------------------------------------------------------


def negative_labels(
    real_labels: torch.Tensor | None, *, label: int | torch.Tensor | None = None
) -> torch.Tensor | None:
    """Labels for negatives made from ``real`` samples, for a class-conditional discriminator.

    By default a negative keeps the label of the real sample it was made from (the NDA paper's
    choice for conditional BigGAN). ``label`` overrides it: an ``int`` class index for every
    negative (integer labels), or a ``(c_dim,)`` / ``(B, c_dim)`` conditioning tensor (e.g. a
    one-hot "negative" class for StyleGAN2-ADA's ``c``).

    Args:
        real_labels: ``(B,)`` integer labels or ``(B, c_dim)`` conditioning, or ``None`` for an
            unconditional model (then the result is ``None`` unless ``label`` is a tensor).
        label: override, see above.

    Returns:
        A new tensor shaped like ``real_labels`` (or ``label`` broadcast to the batch), or ``None``.
    """
    if label is None:
        if real_labels is None:
            return None
        _check_tensor("real_labels", real_labels, floating=False)
        return real_labels.clone()
    if isinstance(label, torch.Tensor):
        if real_labels is None:
            return label.clone()
        _check_tensor("real_labels", real_labels, floating=False)
        try:
            return label.to(device=real_labels.device, dtype=real_labels.dtype).expand_as(real_labels).clone()
        except RuntimeError as exc:
            raise ValueError(
                f"label of shape {tuple(label.shape)} does not broadcast to real_labels of shape "
                f"{tuple(real_labels.shape)}"
            ) from exc
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise TypeError(f"label must be an int, a tensor or None, got {type(label).__name__}")
    if label < 0:
        raise ValueError(f"label must be a non-negative class index, got {label}")
    if real_labels is None:
        raise ValueError("label as an int needs real_labels (to know the batch size and device)")
    _check_tensor("real_labels", real_labels, floating=False)
    if real_labels.is_floating_point() or real_labels.dim() != 1:
        raise TypeError(
            f"label as an int needs (B,) integer real_labels, got dtype {real_labels.dtype} and "
            f"shape {tuple(real_labels.shape)}; pass a (c_dim,) tensor for conditioning vectors"
        )
    return torch.full_like(real_labels, int(label))


def conditional_pairs(condition: torch.Tensor, target: torch.Tensor, *, dim: int = 1) -> torch.Tensor:
    """Input of a pix2pix-style conditional discriminator: ``cat(condition, target)``.

    For NDA the negative pair is ``conditional_pairs(real_A, T(real_B))``: the real condition with
    a negative target.

    Args:
        condition: ``(B, C_a, H, W)`` condition (pix2pix's ``real_A``).
        target: ``(B, C_b, H, W)`` target (``real_B``, ``fake_B`` or a negative of ``real_B``).
        dim: the channel dimension to concatenate along.

    Returns:
        ``(B, C_a + C_b, H, W)``.
    """
    _check_tensor("condition", condition, floating=False, min_dim=2)
    _check_tensor("target", target, floating=False, min_dim=2)
    if condition.dim() != target.dim():
        raise ValueError(
            f"condition and target must have the same number of dimensions, got shapes "
            f"{tuple(condition.shape)} and {tuple(target.shape)}"
        )
    if not -condition.dim() <= dim < condition.dim():
        raise ValueError(f"dim must index a dimension of condition (ndim {condition.dim()}), got {dim}")
    d = dim % condition.dim()
    if d == 0:
        raise ValueError("dim must not be the batch dimension 0")
    a = tuple(s for i, s in enumerate(condition.shape) if i != d)
    b = tuple(s for i, s in enumerate(target.shape) if i != d)
    if a != b:
        raise ValueError(
            f"condition {tuple(condition.shape)} and target {tuple(target.shape)} must agree in "
            f"every dimension but {dim}"
        )
    if condition.dtype != target.dtype or condition.device != target.device:
        raise TypeError(
            f"condition and target must share dtype and device, got ({condition.dtype}, "
            f"{condition.device}) and ({target.dtype}, {target.device})"
        )
    return torch.cat([condition, target], dim=d)
