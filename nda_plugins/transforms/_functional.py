"""Deterministic tensor functions: given the sampled parameters, build the negatives.

Two ideas keep these close to the speed of a plain copy:

* Rearranging transforms (jigsaw, stitch) are a single ``index_select`` over contiguous *runs*
  of memory (a cell's row segment, a half row). The index is tiny next to the data, and
  ``index_select`` over runs of a few dozen elements or more streams like a copy.
* Masking / blending transforms (cutout, cutmix, mixup) are one ``lerp`` whose per-sample
  parameters broadcast: ``(B, 1, ..., 1)`` weights, or a box mask built from a row and a column
  indicator. The two-image ones blend into the gathered partner batch in place, so a call
  allocates one batch-sized tensor. On small images the cost is the number of ops, not the data,
  so box indicators come from cached lookup tables.
* A blend with 0/1 weights is exact only for finite values (``x + 0 * (inf - x)`` is NaN), so
  the box transforms use it only where the batch is known to be finite (CPU: one sum), and
  otherwise select with ``torch.where`` (:func:`select`, :func:`box_fill_mean`): a NaN or inf
  pixel stays where it is. On large CPU images cutmix instead clones the batch and copies only
  the boxes, as runs of memory (:func:`paste_boxes`), exact for any values.

All functions take "planes": a contiguous ``(B, P, H, Wm)`` view of the input in which every
sample is ``P`` planes of ``H`` rows and ``Wm = W * m`` elements, where ``m`` is 1 for
channels-first memory and the number of channels for channels-last memory. See
:func:`to_planes`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from . import _sampling as S

Restore = Callable[[torch.Tensor], torch.Tensor]


def to_planes(x: torch.Tensor) -> tuple[torch.Tensor, int, Restore]:
    """View an image ``(B, C, H, W)`` or video ``(B, C, T, H, W)`` batch as contiguous planes.

    Returns:
        ``(planes, m, restore)``: ``planes`` is ``(B, P, H, W * m)`` and shares memory with ``x``
        when ``x`` is contiguous in either memory format; ``restore(out_planes)`` gives a tensor
        with ``x``'s shape and memory format.
    """
    if x.dim() == 4:
        b, c, h, w = x.shape
        if x.is_contiguous():
            return x.view(b, c, h, w), 1, lambda out: out.view(b, c, h, w)
        if x.is_contiguous(memory_format=torch.channels_last):
            planes = x.permute(0, 2, 3, 1).view(b, 1, h, w * c)
            return planes, c, lambda out: out.view(b, h, w, c).permute(0, 3, 1, 2)
    else:
        b, c, t, h, w = x.shape
        if x.is_contiguous():
            return x.view(b, c * t, h, w), 1, lambda out: out.view(b, c, t, h, w)
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            planes = x.permute(0, 2, 3, 4, 1).view(b, t, h, w * c)
            return planes, c, lambda out: out.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)
    # Any other stride pattern: work on a contiguous copy, return a contiguous result.
    return to_planes(x.contiguous())


def _jigsaw_base(b: int, p: int, h: int, grid: int, device) -> torch.Tensor:
    """Run index of ``(b, p, cell-row 0, row r, cell-col 0)``, shaped ``(B, P, 1, ch, 1)``."""
    ch = h // grid

    def make():
        sample = torch.arange(b).view(b, 1, 1, 1, 1) * (p * h * grid)
        plane = torch.arange(p).view(1, p, 1, 1, 1) * (h * grid)
        row = torch.arange(ch).view(1, 1, 1, ch, 1) * grid
        return sample + plane + row

    return S._cached(("jigsaw_base", b, p, h, grid), device, make)


def jigsaw(planes: torch.Tensor, perm: torch.Tensor, grid: int, m: int = 1) -> torch.Tensor:
    """Rearrange a ``grid x grid`` tiling of every sample by its own permutation.

    Cell ``t = i * grid + j`` (row ``i``, column ``j``) of the output is cell ``perm[b, t]`` of the
    input. When ``H`` or ``W`` is not a multiple of ``grid``, the last rows/columns (fewer than
    ``grid``) stay in place.

    Args:
        planes: ``(B, P, H, W * m)`` contiguous.
        perm: ``(B, grid * grid)`` long, each row a permutation of ``range(grid * grid)``.
        grid: cells per side.
        m: elements per pixel along the last axis (see :func:`to_planes`).

    Returns:
        ``(B, P, H, W * m)`` contiguous tensor.
    """
    b, p, h, wm = planes.shape
    w = wm // m
    ch, cw = h // grid, w // grid
    if ch * grid != h or cw * grid != w:
        out = planes.clone()
        region = planes[:, :, : ch * grid, : cw * grid * m].contiguous()
        out[:, :, : ch * grid, : cw * grid * m] = jigsaw(region, perm, grid, m)
        return out
    # One cell's row segment is a contiguous run of cw * m elements. Source cell s = (si, sj)
    # starts at run si * ch * grid + sj within its plane.
    cell_start = S._cached(
        ("jigsaw_cells", grid, ch),
        planes.device,
        lambda: torch.tensor([(s // grid) * ch * grid + s % grid for s in range(grid * grid)]),
    )
    cells = cell_start.index_select(0, perm.reshape(-1)).view(b, 1, grid, 1, grid)
    index = (_jigsaw_base(b, p, h, grid, planes.device) + cells).view(-1)
    return planes.view(-1, cw * m).index_select(0, index).view(b, p, h, wm)


STITCH_MODES = """mode bit 1 (value 2): split along a vertical line (left | right) instead of a horizontal
one (top / bottom); bit 0 (value 1): the partner gives the second half (right or bottom)."""


def _stitch_patterns(h: int, w: int, device) -> torch.Tensor:
    """``(4, h, w)`` bool: True where the partner's pixels go, for each mode."""

    def make():
        second_h = (torch.arange(h) >= h // 2).view(h, 1).expand(h, w)
        second_v = (torch.arange(w) >= w // 2).view(1, w).expand(h, w)
        return torch.stack([~second_h, second_h, ~second_v, second_v])

    return S._cached(("stitch_patterns", h, w), device, make)


def stitch(planes: torch.Tensor, partner: torch.Tensor, mode: torch.Tensor, m: int = 1) -> torch.Tensor:
    """Join one half of each sample with the other half of its partner (same batch).

    Each half row is a contiguous run of ``W * m / 2`` elements, so the whole op is one
    ``index_select`` over half rows.

    Args:
        planes: ``(B, P, H, W * m)`` contiguous; ``H`` and ``W`` even.
        partner: ``(B,)`` long, index of each sample's partner in the batch.
        mode: ``(B,)`` long in ``[0, 4)``; see ``STITCH_MODES``.

    Returns:
        ``(B, P, H, W * m)`` contiguous tensor.
    """
    b, p, h, wm = planes.shape
    device = planes.device
    take = _stitch_patterns(h, 2, device).index_select(0, mode)  # (B, H, 2) half rows
    source = torch.where(take, partner.view(b, 1, 1), S.arange(b, device).view(b, 1, 1))
    offsets = S._cached(("stitch_offsets", p, h), device, lambda: torch.arange(p * h * 2).view(1, p, h, 2))
    index = source.unsqueeze(1) * (p * h * 2) + offsets
    return planes.view(-1, wm // 2).index_select(0, index.view(-1)).view(b, p, h, wm)


def half_mask(shape, mode: torch.Tensor) -> torch.Tensor:
    """The stitch mask (True where the partner's pixels go), ``(B, 1, ..., H, W)``."""
    b, h, w = shape[0], shape[-2], shape[-1]
    mask = _stitch_patterns(h, w, mode.device).index_select(0, mode)
    return mask.view((b,) + _lead(len(shape)) + (h, w))


def _lead(x_dim: int) -> tuple[int, ...]:
    return (1,) * (x_dim - 3)


def box_axes(shape, start: torch.Tensor, size: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's box as a row indicator and a column indicator (0/1 values of ``dtype``).

    The box mask is ``rows * cols``; keeping the two factors lets ops broadcast them instead of
    reading a full mask.

    Args:
        shape: the batch shape.
        start: ``(B, 2)`` long, ``(top, left)``.
        size: ``(B, 2)`` long, ``(height, width)``.

    Returns:
        ``(rows, cols)`` shaped ``(B, 1, ..., H, 1)`` and ``(B, 1, ..., 1, W)``.
    """
    b, h, w = shape[0], shape[-2], shape[-1]
    n = max(h, w)
    if n <= _BOX_TABLE_MAX_SIDE:
        # Small images: the cost is per op, not per element, so look the indicators up in a
        # cached table of [start, start + size) ranges: one op.
        table = S._cached(("box_table", n, dtype), start.device, lambda: _range_table(n, dtype))
        inside = table.index_select(0, torch.add(size, start, alpha=n + 1).view(-1))
    else:
        # Row r is inside [top, top + height) iff |2r + 1 - (2 top + height)| < height. Rows and
        # columns are done in one (B, 2, max(H, W)) comparison.
        coords = S._cached(("box_coords", n), start.device, lambda: (torch.arange(n) * 2 + 1).expand(2, n))
        size = size.unsqueeze(2)
        inside = ((coords - torch.add(size, start.unsqueeze(2), alpha=2)).abs_() < size).to(dtype)
    # `inside` is freshly made (contiguous, storage offset 0) and holds (B, 2, n): the row
    # indicator, then the column indicator. Two as_strided views instead of a chain of slices
    # and reshapes (each of which is an op).
    ones, zeros = _lead(len(shape)), (0,) * (len(shape) - 3)
    rows = inside.as_strided((b,) + ones + (h, 1), (2 * n,) + zeros + (1, 0))
    cols = inside.as_strided((b,) + ones + (1, w), (2 * n,) + zeros + (0, 1), n)
    return rows, cols


def box_weights(shape, start: torch.Tensor, size: torch.Tensor, dtype) -> torch.Tensor:
    """``(B, 1, ..., H, W)`` indicator of each sample's box, as 0/1 values of ``dtype``."""
    rows, cols = box_axes(shape, start, size, dtype)
    return rows * cols


_BOX_TABLE_MAX_SIDE = 64  # table of (n + 1)^2 rows of n values: 1 MiB in float32 at n = 64


def _range_table(n: int, dtype) -> torch.Tensor:
    """``((n + 1) * (n + 1), n)``: row ``start * (n + 1) + size`` is the indicator of
    ``[start, start + size)`` on ``range(n)``."""
    coords = torch.arange(n)
    start = torch.arange(n + 1).view(n + 1, 1, 1)
    size = torch.arange(n + 1).view(1, n + 1, 1)
    return ((coords >= start) & (coords < start + size)).to(dtype).view((n + 1) * (n + 1), n)


def box_fill_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cutout by masks: each sample's box filled with its per-channel (and per-frame) mean.

    Exact for any values: the sum is over the box's pixels only (``torch.where``, not a product
    with 0/1 weights, so a NaN or inf outside the box changes nothing), and the fill is a
    selection. One elementwise pass over the batch per op; the path for small images (where the
    number of ops is the cost), for devices other than the CPU, for inputs that require grad
    and under ``torch.compile`` (which fuses it).

    Args:
        x: the batch.
        mask: ``(B, 1, ..., H, W)`` bool box mask (or a broadcastable pair product).

    Returns:
        A new tensor like ``x`` (contiguous in ``x``'s layout as ``torch.where`` makes it).
    """
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    total = torch.where(mask, x, 0).sum(dim=(-2, -1), keepdim=True, dtype=work)
    area = mask.sum(dim=(-2, -1), keepdim=True, dtype=work)
    mean = total / area
    if not x.dtype.is_floating_point:
        mean = mean.round()  # the fill a uint8 image can hold
    return torch.where(mask, mean.to(x.dtype), x)


# -- box paste: clone the batch, then copy only the boxes ------------------------------------
#
# On the CPU an elementwise op with broadcast masks runs well below memory speed, while a copy
# and an index_select over runs of a few dozen elements run at it. So for large images the box
# transforms clone the batch and then move only the boxes' pixels, as runs:
#
# * rows: ``rows_max`` row slots per box, slot k holding row ``top + min(k, height - 1)``
#   (slots past the box repeat its last row);
# * columns: ``n_runs`` runs of ``run`` pixels per row, run j starting at column
#   ``left + min(j * run, width - run)``; with ``run <= width <= n_runs * run`` they cover the
#   box's columns exactly (the last runs may overlap the one before).
#
# Every slot lies inside the box, so repeated slots only move the same pixel again, with the
# same value. A run of ``run * m`` elements starting at any element is a row of the overlapping
# view ``flat.as_strided((N - L + 1, L), (1, 1))``, so gathering and writing runs is one
# index_select and one index_copy_ on that view.


def _runs_of(flat: torch.Tensor, length: int) -> torch.Tensor:
    """Every run of ``length`` consecutive elements of a 1-D contiguous tensor, as rows."""
    return flat.as_strided((flat.numel() - length + 1, length), (1, 1))


def box_runs(planes_shape, start: torch.Tensor, size: torch.Tensor, m: int, rows_max: int, run: int, n_runs: int):
    """Element offsets, within a sample, of the runs that cover each sample's box.

    Args:
        planes_shape: ``(B, P, H, W * m)`` (see :func:`to_planes`).
        start, size: ``(B, 2)`` boxes; every height ``<= rows_max`` and every width in
            ``[run, n_runs * run]``.
        m: elements per pixel along the last axis.
        rows_max, run, n_runs: the fixed run layout (see above).

    Returns:
        ``(B, P, rows_max, n_runs)`` long offsets of each run's first element.
    """
    b, p, h, wm = planes_shape
    device = start.device
    height, width = size[:, :1], size[:, 1:]
    k = S.arange(rows_max, device)
    rows = torch.minimum(k, height - 1).add_(start[:, :1])  # (B, rows_max)
    first = S._cached(("run_firsts", n_runs, run), device, lambda: torch.arange(n_runs) * run)
    rel = torch.minimum(first, width - run)  # (B, n_runs) run start relative to the box
    plane = S._cached(("plane_offsets", p, h * wm), device, lambda: (torch.arange(p) * (h * wm)).view(1, p, 1, 1))
    offsets = (rows * wm).view(b, 1, rows_max, 1) + ((rel + start[:, 1:]) * m).view(b, 1, 1, n_runs) + plane
    return offsets


def run_layout(rows_max: int, width_lo: int, width_hi: int) -> tuple[int, int, int]:
    """``(rows_max, run, n_runs)`` for boxes with heights ``<= rows_max`` and widths in
    ``[width_lo, width_hi]``: the fewest runs that reach ``width_hi``, each as short as that
    allows (``run <= width_lo``, so a run never leaves its box)."""
    n_runs = -(-width_hi // width_lo)
    return rows_max, -(-width_hi // n_runs), n_runs


def paste_boxes(planes, source, source_sample, offsets, run_elems: int) -> torch.Tensor:
    """``planes`` with each sample's box replaced by the same box of ``source[source_sample]``.

    Args:
        planes, source: ``(B, P, H, W * m)`` contiguous, the same shape.
        source_sample: ``(B,)`` long, which sample of ``source`` fills each box.
        offsets: from :func:`box_runs`.
        run_elems: ``run * m``.
    """
    b = planes.shape[0]
    per = planes[0].numel()
    out = planes.clone()
    samples = S._cached(("sample_offsets", b, per), planes.device, lambda: (torch.arange(b) * per).view(b, 1, 1, 1))
    src = (offsets + (source_sample * per).view(b, 1, 1, 1)).view(-1)
    runs = _runs_of(source.view(-1), run_elems).index_select(0, src)
    _runs_of(out.view(-1), run_elems).index_copy_(0, (offsets + samples).view(-1), runs)
    return out


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every value of these CPU tensors is finite, from one sum each (CPU only: the
    read-back is a memory read, not a device synchronisation).

    A sum is finite only if every term is (a NaN or inf term makes it NaN or inf); a finite
    batch whose sum overflows reads as non-finite, which only costs the exact path.
    """
    for t in tensors:
        if t.dtype.is_floating_point:
            total = t.sum() if t.dtype in (torch.float32, torch.float64) else t.sum(dtype=torch.float32)
            # One CPU scalar: a memory read, no device sync (math.isfinite: torch.isfinite is
            # four ops, which shows on small batches).
            if not math.isfinite(float(total)):
                return False
    return True


def box_mean(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (and per-frame) mean of ``x`` inside each sample's box.

    Every pixel enters its plane's sum, times 1 or 0, so the mean is exact for finite ``x``, and
    a NaN or inf anywhere in a plane (inside the box or not; ``inf * 0`` is NaN) makes that
    plane's mean non-finite: finite means show that all of ``x`` is finite.

    Args:
        x: the batch.
        mask: :func:`box_weights` (0/1) in the float dtype to compute in.

    Returns:
        ``(mean, scratch)``: the mean, shaped like ``x`` with ``H, W`` reduced to ``1, 1``, in
        ``mask``'s dtype; and the x-sized ``x * mask`` it was summed from, which the caller may
        reuse as an output buffer.
    """
    work = x if x.dtype == mask.dtype else x.to(mask.dtype)
    product = work * mask
    area = mask.sum(dim=(-2, -1), keepdim=True)  # in mask's dtype: no cast in the division
    return product.sum(dim=(-2, -1), keepdim=True).div_(area), product


def box_mean_from_rows(x: torch.Tensor, start: torch.Tensor, size: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The same mean as :func:`box_mean`, reading only the rows each box covers (finite ``x``
    only: a NaN in a box row outside the box leaks through the column weights).

    For large images, where :func:`box_mean`'s ``x * mask`` product (a batch-sized write and
    read) costs more than the blend that uses the mean. Every plane's box rows are summed with
    one ``embedding_bag`` (a weighted sum of selected rows): bag ``(b, plane)`` lists ``H``
    rows, the box's own rows with weight 1, then its last row again with weight 0 (already in
    cache, so it costs compute, not memory traffic); the fixed bag length keeps shapes static.
    The columns are then a dot product with the column indicator.

    Args:
        x: the batch, ``float32`` or ``float64``.
        start, size: ``(B, 2)`` boxes, as from :func:`~._sampling.boxes`.
        cols: the column indicator from :func:`box_axes`, in ``x``'s dtype.

    Returns:
        The mean, shaped like ``x`` with ``H, W`` reduced to ``1, 1``.
    """
    planes, m, _ = to_planes(x)
    b, p, h, wm = planes.shape
    w = wm // m
    device = planes.device
    height = size[:, :1]
    offsets = S.arange(h, device)
    rows = torch.minimum(offsets, height - 1).add_(start[:, :1])  # (B, H) row of each bag entry
    weight = (offsets < height).to(x.dtype).unsqueeze(1).expand(b, p, h).reshape(b * p, h)
    first_row = S._cached(("plane_rows", b, p, h), device, lambda: torch.arange(0, b * p * h, h).view(b, p, 1))
    index = (first_row + rows.unsqueeze(1)).view(b * p, h)
    sums = torch.nn.functional.embedding_bag(
        index, planes.view(-1, wm), mode="sum", per_sample_weights=weight
    )  # (B * P, W * m): each plane's box rows, summed
    sums = (sums.view(b, p, w, m) * cols.reshape(b, 1, w, 1)).sum(dim=2)  # (B, P, m)
    mean = sums / size.prod(dim=1).view(b, 1, 1)
    if m > 1:  # channels-last planes hold (frames, channels); x's order is (channels, frames)
        mean = mean.transpose(1, 2)
    return mean.reshape(x.shape[:-2] + (1, 1))


def blend01(x: torch.Tensor, other: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``other`` where ``weights`` is 1, ``x`` where it is 0, by ``torch.lerp``: exact for finite
    values (``start + 0 * d``, ``end - 0 * d``) and on the CPU several times faster than
    ``torch.where``; a NaN or inf leaks through the 0 weights, so use :func:`select` unless the
    inputs are known to be finite. Integer inputs go through float32."""
    if x.dtype.is_floating_point:
        return torch.lerp(x, other.to(x.dtype), weights.to(x.dtype))
    return cast_like(torch.lerp(x.float(), other.float(), weights.float()), x)


def select(x: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``other`` where ``mask`` is true (or 1), ``x`` elsewhere (``mask`` broadcasts).

    A true selection (``torch.where``): a NaN or inf pixel stays where it is. An arithmetic
    blend with 0/1 weights would not: ``x + 0 * (nan - x)`` is NaN.
    """
    return torch.where(mask if mask.dtype == torch.bool else mask.bool(), other.to(x.dtype), x)


def cast_like(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Cast a float result to ``x``'s dtype (rounding and clamping for integer types)."""
    if value.dtype == x.dtype:
        return value
    if x.dtype.is_floating_point:
        return value.to(x.dtype)
    info = torch.iinfo(x.dtype)
    return value.round().clamp_(info.min, info.max).to(x.dtype)
