"""Evaluation metrics: AUROC of discriminator scores, the D-gap statistic, NCR.

A discriminator trained with NDA doubles as an anomaly detector: in-distribution samples should
score higher than out-of-distribution ones (:func:`auroc`), and ``D(x) - D(jigsaw(x))`` should be
positive (:func:`d_gap`). These run at evaluation time; they return tensors and never call
``.item()``, so ``float(...)`` them to log.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import torch

from .losses import _check_tensor
from .nat import ncr

__all__ = ["DGap", "auroc", "d_gap", "ncr"]


def _scores(name: str, x: Any) -> torch.Tensor:
    _check_tensor(name, x, floating=False)
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold real-valued scores, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must hold at least one score, got shape {tuple(x.shape)}")
    x = x.reshape(-1).to(torch.float64)
    nan = int(torch.isnan(x).sum())  # evaluation code: one sync is fine; NaN has no rank
    if nan:
        raise ValueError(f"{name} holds {nan} NaN score(s) of {x.numel()}; a NaN cannot be ranked "
                         "(drop those samples or fix the model that produced them)")
    return x


def auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve for "in-distribution scores higher than out-of-distribution".

    Equal to the Mann-Whitney statistic ``U / (n_in * n_out)``: the probability that a random
    in-distribution score exceeds a random out-of-distribution one, ties counting one half.

    Args:
        scores_in: ``(n_in,)`` (any shape, flattened) scores of in-distribution samples.
        scores_out: ``(n_out,)`` scores of out-of-distribution samples (same device).

    Returns:
        A 0-d float64 tensor in ``[0, 1]``; ``0.5`` is chance.

    Example:
        >>> float(auroc(torch.tensor([3.0, 2.0]), torch.tensor([2.0, 1.0])))
        0.875
    """
    s_in = _scores("scores_in", scores_in)
    s_out = _scores("scores_out", scores_out)
    if s_in.device != s_out.device:
        raise TypeError(f"scores_in and scores_out must be on one device, got {s_in.device} and {s_out.device}")
    sorted_out, _ = torch.sort(s_out)
    below = torch.searchsorted(sorted_out, s_in, right=False)  # out-scores < s
    below_or_tied = torch.searchsorted(sorted_out, s_in, right=True)  # out-scores <= s
    u = (below + below_or_tied).to(torch.float64).sum() / 2.0  # below + ties/2
    return u / (s_in.numel() * s_out.numel())


class DGap(NamedTuple):
    """Result of :func:`d_gap`.

    Attributes:
        gap: ``(B,)`` per-sample ``D(x) - D(negative of x)``.
        mean: 0-d mean gap.
        counts: ``(bins,)`` histogram counts of ``gap`` (float, as ``torch.histc``).
        edges: ``(bins + 1,)`` bin edges; bin ``i`` is ``[edges[i], edges[i+1])``, the last one closed.
    """

    gap: torch.Tensor
    mean: torch.Tensor
    counts: torch.Tensor
    edges: torch.Tensor


def d_gap(
    d_real: torch.Tensor,
    d_neg: torch.Tensor,
    *,
    bins: int = 50,
    range: tuple[float, float] | None = None,  # noqa: A002 - the name numpy and torch use
) -> DGap:
    """The D-gap statistic ``D(x) - D(T(x))`` per sample, with a histogram.

    Args:
        d_real: ``(B, ...)`` discriminator outputs on real samples (patch outputs are averaged
            over non-batch dimensions).
        d_neg: outputs on the negatives made from the same samples, same shape as ``d_real``.
        bins: number of histogram bins.
        range: ``(low, high)`` histogram range; ``None`` uses the data's min and max (widened by
            1 on each side when they are equal, as ``torch.histc`` does). Values outside the range
            are not counted.

    Returns:
        A :class:`DGap`.
    """
    _check_tensor("d_real", d_real)
    _check_tensor("d_neg", d_neg)
    if d_real.shape != d_neg.shape:
        raise ValueError(
            f"d_neg must have d_real's shape {tuple(d_real.shape)} (paired samples), got {tuple(d_neg.shape)}"
        )
    if d_real.shape[0] == 0:
        raise ValueError("d_real must hold at least one sample")
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")
    gap = d_real - d_neg
    if gap.dim() > 1:
        gap = gap.reshape(gap.shape[0], -1).mean(dim=1)
    values = gap.detach().to(torch.float64)
    if range is None:
        bad = int((~torch.isfinite(values)).sum())  # evaluation code: one sync is fine
        if bad:
            raise ValueError(
                f"d_real - d_neg holds {bad} non-finite gap(s) of {values.numel()} (NaN or inf outputs), so the "
                "histogram range cannot come from the data; pass range=(low, high) to count the finite ones")
        low, high = values.amin(), values.amax()
        equal = (low == high).to(torch.float64)  # histc's rule for a constant input, as tensors
        low, high = low - equal, high + equal
        counts = torch.histc(values, bins=int(bins), min=0, max=0)
    else:
        if (
            not isinstance(range, (tuple, list))
            or len(range) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in range)
        ):
            raise TypeError(f"range must be a (low, high) pair of numbers or None, got {range!r}")
        if not all(math.isfinite(float(v)) for v in range):
            raise ValueError(f"range must be a pair of finite numbers (low, high), got {range!r}")
        if not float(range[0]) < float(range[1]):
            raise ValueError(f"range must have low < high, got {range!r}")
        low = torch.tensor(float(range[0]), dtype=torch.float64, device=values.device)
        high = torch.tensor(float(range[1]), dtype=torch.float64, device=values.device)
        counts = torch.histc(values, bins=int(bins), min=float(range[0]), max=float(range[1]))
    steps = torch.arange(int(bins) + 1, dtype=torch.float64, device=values.device) / int(bins)
    edges = low + (high - low) * steps
    return DGap(gap=gap, mean=gap.mean(), counts=counts, edges=edges)
