"""NAT: negative-aware training of classifiers (and categorical GAN discriminators).

Positives are trained with cross-entropy on their class; negatives (e.g. NDA views, or
samples of no class) are pushed towards the uniform distribution with
``KL(U || softmax(logits)) = -log C - mean_c log softmax(logits)_c``. Each part is weighted by
its share of the batch, i.e. the loss is the batch mean of the per-sample loss.

Example:
    >>> import torch
    >>> logits = torch.randn(6, 10)
    >>> targets = torch.tensor([1, 2, 3, 0, 0, 0])
    >>> neg = torch.tensor([False, False, False, True, True, True])
    >>> nat_loss(logits, targets, negative_mask=neg).shape
    torch.Size([])
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F

from .losses import _check_tensor

__all__ = ["kl_uniform", "nat_gan_discriminator_loss", "nat_loss", "ncr"]


def _check_logits(name: str, logits: Any) -> torch.Tensor:
    _check_tensor(name, logits, min_dim=2)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name} must be (B, C) with C >= 2 classes, got shape {tuple(logits.shape)}")
    return logits


def _check_targets(name: str, targets: Any, batch: int, logits_name: str) -> torch.Tensor:
    _check_tensor(name, targets, floating=False)
    if targets.is_floating_point() or targets.dtype == torch.bool or targets.dim() != 1:
        raise TypeError(
            f"{name} must be a (B,) integer class-index tensor, got dtype {targets.dtype} and shape "
            f"{tuple(targets.shape)}"
        )
    if targets.shape[0] != batch:
        raise ValueError(f"{name} has {targets.shape[0]} rows but {logits_name} has batch size {batch}")
    return targets


def _check_classes(name: str, targets: torch.Tensor, classes: int, ignore: torch.Tensor | None = None) -> None:
    """Refuse class indices outside ``[0, classes)`` on the CPU, where reading them costs no sync
    (torch would fail deep inside ``gather``). On accelerators the values are not read: the
    losses stay sync-free and CUDA reports a bad index with its own device-side assert."""
    if targets.device.type != "cpu":
        return
    bad = (targets < 0) | (targets >= classes)
    if ignore is not None:
        bad &= ~ignore
    if bool(bad.any()):
        shown = targets[bad][:5].tolist()
        raise ValueError(f"{name} must hold class indices in [0, {classes - 1}], got {shown}"
                         + (" (rows in negative_mask may hold anything)" if ignore is not None else ""))


def kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(uniform || softmax(logits))``.

    Args:
        logits: ``(B, C)``.

    Returns:
        ``(B,)``, zero exactly when the softmax is uniform.
    """
    _check_logits("logits", logits)
    num_classes = logits.shape[1]
    return -math.log(num_classes) - F.log_softmax(logits, dim=1).mean(dim=1)


def _per_sample_nat(logits: torch.Tensor, targets: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=1)
    # Negative rows may carry any target (e.g. -1): gather from class 0 there, result unused.
    safe = torch.where(negative, torch.zeros_like(targets), targets)
    ce = -log_p.gather(1, safe.long().unsqueeze(1)).squeeze(1)
    kl = -math.log(logits.shape[1]) - log_p.mean(dim=1)
    return torch.where(negative, kl, ce)


def nat_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    negative_mask: torch.Tensor | None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy on positives plus ``KL(U || softmax)`` on negatives.

    ``mean`` = ``(n_pos / B) * mean_pos CE + (n_neg / B) * mean_neg KL``: each part weighted by
    its share of the batch (no sync is needed to count them).

    Args:
        logits: ``(B, C)`` classifier outputs.
        targets: ``(B,)`` integer classes; ignored on negative rows (any value, e.g. ``-1``).
        negative_mask: ``(B,)`` bool, ``True`` for negatives; ``None`` means no negatives
            (plain cross-entropy).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B,)``).

    Returns:
        A scalar, or ``(B,)``.
    """
    _check_logits("logits", logits)
    batch = logits.shape[0]
    _check_targets("targets", targets, batch, "logits")
    if negative_mask is None:
        negative_mask = torch.zeros(batch, dtype=torch.bool, device=logits.device)
    _check_tensor("negative_mask", negative_mask, floating=False)
    if negative_mask.dtype != torch.bool or negative_mask.dim() != 1:
        raise TypeError(
            f"negative_mask must be a (B,) bool tensor, got dtype {negative_mask.dtype} and shape "
            f"{tuple(negative_mask.shape)}"
        )
    if negative_mask.shape[0] != batch:
        raise ValueError(f"negative_mask has {negative_mask.shape[0]} rows but logits has batch size {batch}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be one of ['mean', 'sum', 'none'], got {reduction!r}")
    _check_classes("targets", targets, logits.shape[1], negative_mask)
    per_sample = _per_sample_nat(logits, targets, negative_mask)
    if reduction == "none":
        return per_sample
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def nat_gan_discriminator_loss(
    real_logits: torch.Tensor,
    real_labels: torch.Tensor,
    fake_logits: torch.Tensor,
    neg_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """NAT-GAN loss of a categorical discriminator (``C`` class outputs, no "fake" class).

    Reals are classified into their class; generated samples and negatives are pushed to the
    uniform distribution. Every row counts by its share of the whole batch
    ``B_r + B_f + B_n`` (the :func:`nat_loss` of the concatenation).

    Args:
        real_logits: ``(B_r, C)`` D outputs on reals.
        real_labels: ``(B_r,)`` integer classes of the reals.
        fake_logits: ``(B_f, C)`` D outputs on generated samples.
        neg_logits: ``(B_n, C)`` D outputs on negatives, or ``None``.

    Returns:
        A scalar.
    """
    _check_logits("real_logits", real_logits)
    _check_logits("fake_logits", fake_logits)
    _check_targets("real_labels", real_labels, real_logits.shape[0], "real_logits")
    parts = [fake_logits]
    if neg_logits is not None:
        _check_logits("neg_logits", neg_logits)
        parts.append(neg_logits)
    for name, part in zip(("fake_logits", "neg_logits"), parts):
        if part.shape[1] != real_logits.shape[1]:
            raise ValueError(
                f"{name} must have real_logits' {real_logits.shape[1]} classes, got shape {tuple(part.shape)}"
            )
    _check_classes("real_labels", real_labels, real_logits.shape[1])
    ce = F.cross_entropy(real_logits, real_labels.long(), reduction="sum")
    kl = kl_uniform(torch.cat(parts, dim=0)).sum()
    total = real_logits.shape[0] + sum(p.shape[0] for p in parts)
    return (ce + kl) / total


def ncr(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Negative confidence rate: fraction of rows whose top softmax probability exceeds ``threshold``.

    Computed on negatives, lower is better (a NAT model is unsure about negatives).

    Args:
        logits: ``(B, C)`` outputs on negatives.
        threshold: a Python number in ``[0, 1)``.

    Returns:
        A 0-d float tensor on ``logits``' device (no sync; ``float()`` it to log).
    """
    _check_logits("logits", logits)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number in [0, 1), got {type(threshold).__name__}")
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if logits.shape[0] == 0:
        raise ValueError("logits must hold at least one row")
    top = F.softmax(logits, dim=1).amax(dim=1)
    return (top > float(threshold)).to(logits.dtype).mean()
