"""Per-sample random parameters, drawn as tensors on the input's device.

Every function here takes a ``torch.Generator`` (or ``None`` for torch's default one on that
device) and returns tensors without a host round-trip, so a transform never synchronises with
the device.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Callable

import torch

_TABLE_MAX_CELLS = 6  # 6! = 720 permutations; larger grids use argsort of random keys


def uniform(shape, *, generator, device) -> torch.Tensor:
    """``U[0, 1)`` floats of ``shape``."""
    return torch.rand(shape, generator=generator, device=device)


def randint(low: int, high: int, shape, *, generator, device) -> torch.Tensor:
    """Integers in ``[low, high]`` (inclusive)."""
    return torch.randint(low, high + 1, shape, generator=generator, device=device)


def arange(n: int, device) -> torch.Tensor:
    """A cached ``arange(n)`` on ``device`` (read-only: never modify it)."""
    return _cached(("arange", n), device, lambda: torch.arange(n))


_cache: dict = {}


def _cached(key, device, make):
    """Small per-device cache of constant tensors or tuples of them (bounded; cleared when full).

    Keyed on ``device`` as given (no normalisation: a lookup is on every transform's hot path),
    so ``"cpu"`` and ``torch.device("cpu")`` may hold a copy each.
    """
    full_key = (key, device)
    value = _cache.get(full_key)
    if value is None:
        if len(_cache) > 256:
            _cache.clear()
        value = make()
        value = tuple(v.to(device) for v in value) if isinstance(value, tuple) else value.to(device)
        _cache[full_key] = value
    return value


def _non_identity_table(n: int, device) -> torch.Tensor:
    def make():
        perms = [q for q in itertools.permutations(range(n)) if q != tuple(range(n))]
        return torch.tensor(perms, dtype=torch.long)

    return _cached(("non_identity", n), device, make)


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

    Each sample draws its partner independently and uniformly among the other ``batch - 1``:
    partner ``(i + 1 + k) mod batch`` with ``k`` uniform in ``[0, batch - 2]``. For batches up to
    :data:`_PARTNER_TABLE_MAX` the sum is looked up in a cached ``(batch, batch - 1)`` table
    (one ``gather`` instead of two arithmetic ops; the draws and the result are the same).

    Returns:
        ``(batch,)`` long tensor.
    """
    return partner_sampler(batch, device)(generator)


def partner_sampler(batch: int, device) -> Callable[[torch.Generator | None], torch.Tensor]:
    """:func:`partners` for one batch size and device as a function of the generator alone, its
    tables looked up once (a transform keeps it per input shape: fewer Python calls per draw)."""
    if batch < 2:
        raise ValueError(
            f"a two-image transform needs a batch of at least 2 images to pair each with another, "
            f"got batch size {batch}; pass partner=<tensor> (or build the transform with a "
            f"partner source) to use batch size 1"
        )
    if batch <= _PARTNER_TABLE_MAX:
        table = _cached(("partners", batch), device, lambda: (
            torch.arange(batch).view(batch, 1) + torch.arange(1, batch).view(1, batch - 1)).remainder(batch))

        def draw(generator):
            pick = torch.randint(0, batch - 1, (batch, 1), generator=generator, device=device)
            return table.gather(1, pick).view(batch)
        return draw
    index = arange(batch, device)

    def draw_arithmetic(generator):
        offset = torch.randint(1, batch, (batch,), generator=generator, device=device)
        return (index + offset).remainder_(batch)
    return draw_arithmetic


_PARTNER_TABLE_MAX = 512  # 512 x 511 longs = 2 MiB


def _box_sides(n: int, low: float, high: float, proper: bool = False) -> tuple[int, int]:
    """Smallest and largest box side on an axis of ``n`` pixels: ``[ceil(low n), floor(high n)]``,
    at least 2 pixels where the image allows (a 1x1 box filled with its own mean reproduces the
    source). ``proper``: at most ``n - 1`` pixels where ``n >= 2``, so a box never covers the
    whole image (cutmix: a whole-image box would copy the partner, a real image)."""
    lo = max(min(2, n), math.ceil(low * n))
    hi = max(lo, math.floor(high * n))
    if proper and n >= 2:
        hi = min(hi, n - 1)
        lo = min(lo, hi)
    return lo, hi


def _axis_boxes(n: int, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(start, size)`` on one axis with its probability under "size uniform in
    ``[lo, hi]``, then start uniform where the box fits": ``(K, 2)`` long and ``(K,)`` float64
    cumulative probabilities (the last exactly 1)."""
    pairs, probs = [], []
    for size in range(lo, hi + 1):
        places = n - size + 1
        pairs.extend((start, size) for start in range(places))
        probs.extend([1.0 / ((hi - lo + 1) * places)] * places)
    cdf = torch.tensor(probs, dtype=torch.float64).cumsum(0)
    cdf[-1] = 1.0
    return torch.tensor(pairs, dtype=torch.long), cdf


_BOX_TABLE_MAX_PAIRS = 1 << 18  # beyond this many (start, size) pairs (both axes), sample arithmetically


def boxes(batch: int, height: int, width: int, *, low: float, high: float, generator, device, proper: bool = False):
    """Random boxes with each side in ``[low, high]`` of the image side, placed inside the image.

    Sides are uniform integers in ``[ceil(low * side), floor(high * side)]`` (at least 2 pixels
    where the image allows; with ``proper``, at most ``side - 1`` where ``side >= 2``: see
    :func:`box_bounds`); the position is uniform over the places where the box fits.

    Both axes are drawn with one ``rand``, one ``searchsorted`` into a cached table of every
    (start, size) pair and its cumulative probability, and a lookup of the starts and the sizes:
    five ops whatever the image size (very large images fall back to arithmetic on uniforms,
    same distribution).

    Returns:
        ``(start, size)``: ``(batch, 2)`` long tensors, ``(top, left)`` and ``(height, width)``.
    """
    return box_sampler(batch, height, width, low=low, high=high, device=device, proper=proper)(generator)[:2]


def box_sampler(batch: int, height: int, width: int, *, low: float, high: float, device,
                proper: bool = False) -> Callable[[torch.Generator | None], tuple]:
    """:func:`boxes` for one batch shape, box range and device as a function of the generator
    alone, its tables looked up once (a transform keeps it per input shape: fewer Python calls
    per draw). The same generator state gives the same boxes as :func:`boxes`.

    The function returns ``(start, size, pick)``: ``pick`` is the ``(batch, 2)`` index of each
    axis's (start, size) pair in the table of :func:`box_pairs` (``None`` where the boxes are
    drawn arithmetically), so that tables indexed like it (the box indicators) are read with
    one lookup of ``pick`` instead of one computed from the start and the size."""
    h_lo, h_hi, w_lo, w_hi, n_pairs = box_bounds(height, width, low, high, proper)
    if n_pairs > _BOX_TABLE_MAX_PAIRS:
        def draw_arithmetic(generator):
            start, size = _boxes_arithmetic(batch, (height, width), (h_lo, w_lo), (h_hi, w_hi), generator, device)
            return start, size, None
        return draw_arithmetic
    starts, sizes, cdf, shift = box_pairs(height, width, h_lo, h_hi, w_lo, w_hi, device)

    def draw(generator):
        u = uniform((batch, 2), generator=generator, device=device).add_(shift)
        pick = torch.searchsorted(cdf, u, right=True)  # (batch, 2): row-axis pair, column-axis pair
        return starts.take(pick), sizes.take(pick), pick
    return draw


def box_pairs(height: int, width: int, h_lo: int, h_hi: int, w_lo: int, w_hi: int, device):
    """The box draw's tables for one image size and side range (cached): ``(starts, sizes, cdf,
    shift)``, every (start, size) pair of the row axis then of the column axis, as two ``(K,)``
    long tensors, with the cumulative probabilities the draw searches (see :func:`box_sampler`)."""

    def make():
        (ph, ch), (pw, cw) = _axis_boxes(height, h_lo, h_hi), _axis_boxes(width, w_lo, w_hi)
        # One increasing sequence for both axes: the width axis's cdf is shifted by 1 and is
        # searched with u + 1, so a single searchsorted returns indices into both tables. The
        # last value is +inf rather than 2: u + 1 can round up to exactly 2.0 in float32.
        cdf = torch.cat([ch, cw + 1.0]).float()
        cdf[-1] = float("inf")
        pairs = torch.cat([ph, pw])
        return pairs[:, 0].contiguous(), pairs[:, 1].contiguous(), cdf, torch.tensor([0.0, 1.0])

    return _cached(("box_pairs", height, width, h_lo, h_hi, w_lo, w_hi), device, make)


@functools.lru_cache(maxsize=256)
def box_bounds(height: int, width: int, low: float, high: float, proper: bool = False) -> tuple[int, int, int, int, int]:
    """Side ranges of both axes, ``(h_lo, h_hi, w_lo, w_hi)``, and how many (start, size) pairs
    they have in all. ``proper``: the box never covers the whole image (it must leave at least
    one pixel of an image with 2 pixels or more; a 1x1 image raises ``ValueError``)."""
    if proper and height == 1 and width == 1:
        raise ValueError("a box that leaves part of the image needs images of at least 2 pixels (1x2 or 2x1), got 1x1")
    (h_lo, h_hi), (w_lo, w_hi) = _box_sides(height, low, high, proper), _box_sides(width, low, high, proper)
    return h_lo, h_hi, w_lo, w_hi, (h_hi - h_lo + 1) * height + (w_hi - w_lo + 1) * width


def _boxes_arithmetic(batch, extent_hw, lo_hw, hi_hw, generator, device):
    def make():  # (lo, span, extent) per axis, cached so a call copies nothing to the device
        lo = torch.tensor(lo_hw, dtype=torch.float32)
        return lo, torch.tensor(hi_hw, dtype=torch.float32) - lo + 1, torch.tensor(extent_hw, dtype=torch.float32) + 1

    lo, span, extent = _cached(("box_bounds", extent_hw, lo_hw, hi_hw), device, make)
    u = uniform((2, batch, 2), generator=generator, device=device)
    # floor(u * n) <= n - 1 for every float32 u < 1 and integer n < 2**24: u * n is at most
    # n * (1 - 2**-24), which rounds to a float below n. Sizes stay exact integers in float32.
    size = torch.addcmul(lo, u[0], span).floor_()
    start = (u[1] * (extent - size)).long()
    return start, size.long()


NORMAL_CHUNK = 1 << 19  # elements per independently seeded chunk
_pool = None


def normal_parallel_(out: torch.Tensor, *, generator) -> torch.Tensor:
    """Fill a CPU tensor with i.i.d. ``N(0, 1)`` using all intra-op threads.

    torch's CPU generator fills a tensor on one thread, so Gaussian noise for a large batch is
    bound by one core. Here the (flattened) tensor is cut into fixed-size chunks, each filled by
    its own generator seeded from ``generator``, on a thread pool. The chunking does not depend
    on the thread count, so the result is the same on every machine for the same seed.
    """
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    flat = out.view(-1) if out.is_contiguous() else None
    if flat is None:  # channels-last etc.: fill the underlying storage order
        flat = out.permute(*sorted(range(out.dim()), key=lambda d: -out.stride(d))).view(-1)
    n_chunks = -(-flat.numel() // NORMAL_CHUNK)
    seeds = torch.randint(0, 2**62, (n_chunks,), generator=generator).tolist()  # CPU: no device sync

    def fill(i: int) -> None:
        g = torch.Generator().manual_seed(seeds[i])
        flat[i * NORMAL_CHUNK : (i + 1) * NORMAL_CHUNK].normal_(generator=g)

    if torch.get_num_threads() <= 1:  # the same chunks, filled in turn: no thread hand-offs
        for i in range(n_chunks):
            fill(i)
        return out
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=torch.get_num_threads(), thread_name_prefix="nda-normal")
    list(_pool.map(fill, range(n_chunks)))
    return out


def beta_symmetric(batch: int, alpha: int, *, generator, device, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """``low + (high - low) * Beta(alpha, alpha)`` samples for a positive integer ``alpha``.

    Uses the order-statistic identity: the ``alpha``-th smallest of ``2*alpha - 1`` independent
    uniforms is ``Beta(alpha, alpha)``. The uniforms are drawn directly on ``[low, high)`` (an
    increasing affine map commutes with taking the k-th smallest), so this is two ops. It needs
    only uniform draws, so it honours the generator (``torch.distributions.Beta`` cannot take one).

    Returns:
        ``(batch,)`` float tensor.
    """
    if alpha == 1:
        return torch.empty(batch, device=device).uniform_(low, high, generator=generator)
    u = torch.empty(batch, 2 * alpha - 1, device=device).uniform_(low, high, generator=generator)
    return u.kthvalue(alpha, dim=1).values
