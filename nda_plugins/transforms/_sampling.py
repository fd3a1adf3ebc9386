"""Per-sample random parameters, drawn as tensors on the input's device.

Every function here takes a ``torch.Generator`` (or ``None`` for torch's default one on that
device) and returns tensors without a host round-trip, so a transform never synchronises with
the device.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch

_TABLE_MAX_CELLS = 6  # 6! = 720 permutations; larger grids use argsort of random keys


def uniform(shape, *, generator, device) -> torch.Tensor:
    """``U[0, 1)`` floats of ``shape``."""
    return torch.rand(shape, generator=generator, device=device)


def randint(low: int, high: torch.Tensor | int, shape, *, generator, device) -> torch.Tensor:
    """Integers in ``[low, high]`` (inclusive; ``high`` may be a tensor broadcast to ``shape``)."""
    u = uniform(shape, generator=generator, device=device)
    span = high - low + 1
    # floor(u * span) < span because u < 1; the clamp guards float32 rounding at u ~ 1.
    value = (u * span).floor_().to(torch.long)
    return torch.minimum(value, torch.as_tensor(span - 1, device=device)) + low


@lru_cache(maxsize=None)
def _non_identity_table_cpu(n: int) -> torch.Tensor:
    perms = [p for p in itertools.permutations(range(n)) if p != tuple(range(n))]
    return torch.tensor(perms, dtype=torch.long)


_table_cache: dict[tuple[int, str], torch.Tensor] = {}


def _non_identity_table(n: int, device: torch.device) -> torch.Tensor:
    key = (n, str(device))
    table = _table_cache.get(key)
    if table is None:
        table = _non_identity_table_cpu(n).to(device)
        _table_cache[key] = table
    return table


def non_identity_permutations(batch: int, n: int, *, generator, device) -> torch.Tensor:
    """A random permutation of ``range(n)`` per sample, never the identity.

    For ``n <= 6`` the permutation is uniform over the ``n! - 1`` non-identity ones (a lookup
    table). For larger ``n`` it is the argsort of random keys, and the rare identity row
    (probability ``1/n!``) is replaced by a cyclic shift, which is never the identity.

    Returns:
        ``(batch, n)`` long tensor.
    """
    if n < 2:
        raise ValueError(f"a permutation that differs from the identity needs n >= 2 cells, got n={n}")
    if n <= _TABLE_MAX_CELLS:
        table = _non_identity_table(n, device)
        rows = randint(0, table.shape[0] - 1, (batch,), generator=generator, device=device)
        return table.index_select(0, rows)
    perm = uniform((batch, n), generator=generator, device=device).argsort(dim=1)
    identity = torch.arange(n, device=device)
    is_identity = (perm == identity).all(dim=1, keepdim=True)
    return torch.where(is_identity, perm.roll(1, dims=1), perm)


def partners(batch: int, *, generator, device) -> torch.Tensor:
    """For each sample, the index of another sample of the same batch (never itself).

    Each sample draws its partner independently and uniformly among the other ``batch - 1``.

    Returns:
        ``(batch,)`` long tensor.
    """
    if batch < 2:
        raise ValueError(
            f"a two-image transform needs a batch of at least 2 images to pair each with another, "
            f"got batch size {batch}; pass partner=<tensor> (or build the transform with a "
            f"partner source) to use batch size 1"
        )
    offset = randint(1, batch - 1, (batch,), generator=generator, device=device)
    return (torch.arange(batch, device=device) + offset) % batch


def boxes(batch: int, height: int, width: int, *, low: float, high: float, generator, device):
    """Random boxes with each side in ``[low, high]`` of the image side, placed inside the image.

    Returns:
        ``(top, left, box_h, box_w)``, each a ``(batch,)`` long tensor.
    """
    def side(size: int) -> tuple[int, int]:
        # At least 2 pixels where the image allows: a 1x1 box filled with its own mean would
        # reproduce the source (only images of side <= 3 are affected).
        lo = max(min(2, size), math.ceil(low * size))
        hi = max(lo, math.floor(high * size))
        return lo, hi

    h_lo, h_hi = side(height)
    w_lo, w_hi = side(width)
    box_h = randint(h_lo, h_hi, (batch,), generator=generator, device=device)
    box_w = randint(w_lo, w_hi, (batch,), generator=generator, device=device)
    top = randint(0, height - box_h, (batch,), generator=generator, device=device)
    left = randint(0, width - box_w, (batch,), generator=generator, device=device)
    return top, left, box_h, box_w


def beta_symmetric(batch: int, alpha: int, *, generator, device) -> torch.Tensor:
    """``Beta(alpha, alpha)`` samples for a positive integer ``alpha``.

    Uses the order-statistic identity: the ``alpha``-th smallest of ``2*alpha - 1`` independent
    uniforms is ``Beta(alpha, alpha)``. This needs only uniform draws, so it honours the
    generator (``torch.distributions.Beta`` cannot take one).

    Returns:
        ``(batch,)`` float tensor.
    """
    if alpha == 1:
        return uniform((batch,), generator=generator, device=device)
    u = uniform((batch, 2 * alpha - 1), generator=generator, device=device)
    return u.sort(dim=1).values[:, alpha - 1]
