"""NDA-InfoNCE: negatives made from a query's own image as extra contrastive negatives.

For query ``q_i`` with positive key ``k_i^+``, negatives ``k_j`` (a queue, or the other positive
keys of the batch) and NDA keys ``n_{i,m}`` (keys of NDA views of the query's own image; NDA
paper eq. 8)::

    loss_i = -log  exp(q_i.k_i^+ / t)
                   / (exp(q_i.k_i^+ / t) + sum_j exp(q_i.k_j / t) + w * sum_m exp(q_i.n_{i,m} / t))

The optional down-weighting ``w`` enters as ``+log w`` on the NDA logits. With no NDA keys this
is plain InfoNCE (MoCo with a queue, SimCLR/MoCo-v3 style with in-batch negatives).

Example:
    >>> import torch
    >>> q, k = torch.randn(8, 16), torch.randn(8, 16)
    >>> nda = torch.randn(8, 2, 16)  # two NDA views per query
    >>> nda_info_nce(q, k, nda_keys=nda, temperature=0.1).shape
    torch.Size([])
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .losses import _check_tensor

__all__ = ["info_nce_logits", "nda_info_nce", "nda_info_nce_dense"]


def _check_temperature(temperature: object) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a positive number, got {type(temperature).__name__}")
    t = float(temperature)
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def _check_nda_weight(nda_weight: object) -> float | None:
    if nda_weight is None:
        return None
    if isinstance(nda_weight, bool) or not isinstance(nda_weight, numbers.Real):
        raise TypeError(f"nda_weight must be a number in [0, 1] or None, got {type(nda_weight).__name__}")
    w = float(nda_weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"nda_weight must be in [0, 1] (a down-weighting of the NDA keys), got {w}")
    return w


def _check_same(name: str, x: torch.Tensor, ref: torch.Tensor, ref_name: str = "query") -> None:
    if x.dtype != ref.dtype or x.device != ref.device:
        raise TypeError(
            f"{name} must share {ref_name}'s dtype and device ({ref.dtype}, {ref.device}), got "
            f"({x.dtype}, {x.device})"
        )


def info_nce_logits(
    query: torch.Tensor,
    positive_key: torch.Tensor,
    negative_keys: torch.Tensor | None = None,
    nda_keys: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    nda_weight: float | None = None,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits and targets of :func:`nda_info_nce` (for logging accuracy, or a custom loss).

    Returns:
        ``(logits, targets)``: ``logits`` ``(B, 1 + K + M)`` with the positive in column 0 when
        ``negative_keys`` is given, else ``(B, B + M)`` with the positive of row ``i`` in column
        ``i``; NDA columns last. ``targets`` ``(B,)`` int64.
    """
    _check_tensor("query", query, min_dim=2)
    _check_tensor("positive_key", positive_key, min_dim=2)
    if query.dim() != 2:
        raise ValueError(f"query must be (B, D), got shape {tuple(query.shape)}")
    if positive_key.shape != query.shape:
        raise ValueError(
            f"positive_key must have query's shape {tuple(query.shape)}, got {tuple(positive_key.shape)}"
        )
    _check_same("positive_key", positive_key, query)
    batch, dim = query.shape
    if batch == 0 or dim == 0:
        raise ValueError(f"query must be (B, D) with B >= 1 and D >= 1 (a zero-width embedding has no "
                         f"similarity), got shape {tuple(query.shape)}")
    if negative_keys is not None:
        _check_tensor("negative_keys", negative_keys, min_dim=2)
        if negative_keys.dim() != 2 or negative_keys.shape[1] != dim:
            raise ValueError(
                f"negative_keys must be (K, D={dim}) (a queue shared by all queries), got shape "
                f"{tuple(negative_keys.shape)}"
            )
        _check_same("negative_keys", negative_keys, query)
    if nda_keys is not None:
        _check_tensor("nda_keys", nda_keys, min_dim=3)
        if nda_keys.dim() != 3 or nda_keys.shape[0] != batch or nda_keys.shape[2] != dim:
            raise ValueError(
                f"nda_keys must be (B={batch}, M, D={dim}) (M NDA keys per query), got shape "
                f"{tuple(nda_keys.shape)}"
            )
        _check_same("nda_keys", nda_keys, query)
    t = _check_temperature(temperature)
    w = _check_nda_weight(nda_weight)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")

    if normalize:
        query = F.normalize(query, dim=-1)
        positive_key = F.normalize(positive_key, dim=-1)
        negative_keys = None if negative_keys is None else F.normalize(negative_keys, dim=-1)
        nda_keys = None if nda_keys is None else F.normalize(nda_keys, dim=-1)

    if negative_keys is None:  # in-batch: every other positive key is a negative
        parts = [query @ positive_key.T]
        targets = torch.arange(batch, device=query.device)
    else:
        positive = (query * positive_key).sum(dim=-1, keepdim=True)
        parts = [positive, query @ negative_keys.T]
        targets = torch.zeros(batch, dtype=torch.long, device=query.device)
    if nda_keys is not None and w != 0.0:
        nda = torch.einsum("bd,bmd->bm", query, nda_keys)
        if w is not None and w != 1.0:
            # +log(w) on the logit == w on the exponential in the denominator
            nda = nda + math.log(w) * t  # divided by t below
        parts.append(nda)
    logits = torch.cat(parts, dim=1) / t
    return logits, targets


def nda_info_nce(
    query: torch.Tensor,
    positive_key: torch.Tensor,
    negative_keys: torch.Tensor | None = None,
    nda_keys: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    nda_weight: float | None = None,
    normalize: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """InfoNCE with per-query NDA keys as extra negatives (NDA paper eq. 8).

    Args:
        query: ``(B, D)`` query embeddings.
        positive_key: ``(B, D)`` key of the positive view of each query's image.
        negative_keys: ``(K, D)`` negatives shared by every query (a MoCo queue / memory bank);
            ``None`` uses in-batch negatives (the other rows of ``positive_key``).
        nda_keys: ``(B, M, D)`` keys of ``M`` NDA views of each query's own image, or ``None``.
        temperature: softmax temperature ``t > 0``.
        nda_weight: ``w`` in ``[0, 1]`` multiplying the NDA terms of the denominator (``+log w``
            on their logits). ``None`` or ``1`` means no down-weighting; ``0`` drops them. Not the
            GAN ``nda_weight`` share: here it scales extra negatives.
        normalize: L2-normalise embeddings first (cosine similarity), as MoCo and SimCLR do.
        reduction: ``"mean"`` (scalar) or ``"none"`` (``(B,)``).

    Returns:
        The loss, a scalar or ``(B,)``.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    logits, targets = info_nce_logits(
        query,
        positive_key,
        negative_keys,
        nda_keys,
        temperature=temperature,
        nda_weight=nda_weight,
        normalize=normalize,
    )
    return F.cross_entropy(logits, targets, reduction=reduction)


def nda_info_nce_dense(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    nda_keys: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    nda_weight: float | None = None,
    normalize: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Dense NDA-InfoNCE over positions, as in CPC / DPC.

    Each prediction ``predictions[b, n]`` (a position ``n`` of the flattened
    ``time x height x width`` grid of sample ``b``) has positive ``targets[b, n]``; every other
    target of the batch, at any position of any sample, is a negative (DPC's spatial, temporal
    and easy negatives together), and ``nda_keys[b, n]`` adds that position's NDA keys (e.g. the
    features of an NDA view of the same clip at that position).

    Args:
        predictions: ``(B, N, D)`` predicted features at ``N`` positions.
        targets: ``(B, N, D)`` true features at the same positions.
        nda_keys: ``(B, N, M, D)`` NDA keys per position, or ``None``.
        temperature: ``t > 0`` (DPC uses raw dot products: ``t=1``, ``normalize=False``).
        nda_weight: as in :func:`nda_info_nce`.
        normalize: L2-normalise features first.
        reduction: ``"mean"`` (scalar) or ``"none"`` (``(B, N)``).

    Returns:
        The loss, a scalar or ``(B, N)``.
    """
    _check_tensor("predictions", predictions, min_dim=3)
    _check_tensor("targets", targets, min_dim=3)
    if predictions.dim() != 3:
        raise ValueError(f"predictions must be (B, N, D), got shape {tuple(predictions.shape)}")
    if targets.shape != predictions.shape:
        raise ValueError(
            f"targets must have predictions' shape {tuple(predictions.shape)}, got {tuple(targets.shape)}"
        )
    _check_same("targets", targets, predictions, "predictions")
    batch, positions, dim = predictions.shape
    if 0 in (batch, positions, dim):
        raise ValueError(f"predictions must be (B, N, D) with B, N, D >= 1, got shape {tuple(predictions.shape)}")
    flat_nda = None
    if nda_keys is not None:
        _check_tensor("nda_keys", nda_keys, min_dim=4)
        if nda_keys.dim() != 4 or nda_keys.shape[:2] != (batch, positions) or nda_keys.shape[3] != dim:
            raise ValueError(
                f"nda_keys must be (B={batch}, N={positions}, M, D={dim}), got shape "
                f"{tuple(nda_keys.shape)}"
            )
        _check_same("nda_keys", nda_keys, predictions, "predictions")
        flat_nda = nda_keys.reshape(batch * positions, nda_keys.shape[2], dim)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    loss = nda_info_nce(
        predictions.reshape(batch * positions, dim),
        targets.reshape(batch * positions, dim),
        None,
        flat_nda,
        temperature=temperature,
        nda_weight=nda_weight,
        normalize=normalize,
        reduction=reduction,
    )
    return loss if reduction == "mean" else loss.reshape(batch, positions)
