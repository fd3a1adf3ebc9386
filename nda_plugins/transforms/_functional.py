"""Deterministic tensor functions: given the sampled parameters, build the negatives.

Two ideas keep these close to the speed of a plain copy:

* Rearranging transforms (jigsaw, stitch) are a single ``index_select`` over contiguous *runs*
  of memory (a cell's row segment, a half row). The index is tiny next to the data, and
  ``index_select`` over runs of a few dozen elements or more streams like a copy.
* Masking / blending transforms (cutout, cutmix, mixup) are one ``lerp`` whose per-sample
  parameters broadcast: ``(B, 1, ..., 1)`` weights, or a box mask built from a row and a column
  indicator. The two-image ones blend into the gathered partner batch in place, so a call
  allocates one batch-sized tensor; large CPU mixup batches are instead one ``embedding_bag``
  that reads both images and writes the mix in a single pass (:func:`mix_rows`). On small
  images the cost is the number of ops, not the data, so box indicators come from cached
  lookup tables.
* A blend with 0/1 weights is exact only for finite values (``x + 0 * (inf - x)`` is NaN), so
  the box transforms use it only where the batch is known to be finite (CPU: one sum), and
  otherwise select with ``torch.where`` (:func:`select`, :func:`box_fill_mean`): a NaN or inf
  pixel stays where it is. On large CPU images both instead clone the batch and write only
  the boxes, through one strided view per box (:func:`box_views`), exact for any values.

All functions take "planes": a contiguous ``(B, P, H, Wm)`` view of the input in which every
sample is ``P`` planes of ``H`` rows and ``Wm = W * m`` elements, where ``m`` is 1 for
channels-first memory and the number of channels for channels-last memory. See
:func:`to_planes`.
"""

from __future__ import annotations

import functools
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


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``x``'s memory format: channels-last (3-D for video) where ``x`` is laid out that way and
    not also contiguous, the contiguous format otherwise."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return torch.channels_last_3d
    return torch.contiguous_format


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


def box_axes(shape, start: torch.Tensor, size: torch.Tensor, dtype, with_area: bool = False):
    """Each sample's box as a row indicator and a column indicator (0/1 values of ``dtype``).

    The box mask is ``rows * cols``; keeping the two factors lets ops broadcast them instead of
    reading a full mask.

    Args:
        shape: the batch shape.
        start: ``(B, 2)`` long, ``(top, left)``.
        size: ``(B, 2)`` long, ``(height, width)``.
        with_area: also return each box's area (``height * width``) in ``dtype``, shaped
            ``(B, 1, ..., 1)`` to broadcast against the batch (a float ``dtype`` only).

    Returns:
        ``(rows, cols)`` shaped ``(B, 1, ..., H, 1)`` and ``(B, 1, ..., 1, W)``, then ``area``
        if asked for.
    """
    return box_axes_fn(shape, dtype, start.device)(start, size, with_area)


def box_axes_fn(shape, dtype, device) -> Callable[..., tuple[torch.Tensor, ...]]:
    """:func:`box_axes` for one batch shape, dtype and device as a function of
    ``(start, size, with_area=False)``: its table and view geometry worked out once (a transform
    keeps it per input shape, so a call does not redo that Python work)."""
    h, w = shape[-2], shape[-1]
    n = max(h, w)
    if n <= _BOX_TABLE_MAX_SIDE:
        # Small images: the cost is per op, not per element, so look the indicators up in a
        # cached table of [start, start + size) ranges (each row ending with the range's length,
        # for the area): one op.
        row = n + 1
        table = _range_table(n, dtype, device)
        views = _indicator_views(shape, row)

        def from_table(start, size, with_area=False):
            return views(table.index_select(0, torch.add(size, start, alpha=row).view(-1)), with_area)
        return from_table
    # Row r is inside [top, top + height) iff |2r + 1 - (2 top + height)| < height. Rows and
    # columns are done in one (B, 2, max(H, W)) comparison.
    coords = S._cached(("box_coords", n), device, lambda: (torch.arange(n) * 2 + 1).expand(2, n))
    views = _indicator_views(shape, n)
    area_shape = (shape[0],) + (1,) * (len(shape) - 1)

    def by_comparison(start, size, with_area=False):
        sides = size.unsqueeze(2)
        inside = ((coords - torch.add(sides, start.unsqueeze(2), alpha=2)).abs_() < sides).to(dtype)
        rows, cols = views(inside)
        if not with_area:
            return rows, cols
        return rows, cols, size.prod(dim=1).to(dtype).view(area_shape)
    return by_comparison


def box_axes_by_pick_fn(shape, dtype, device, bounds) -> Callable[..., tuple[torch.Tensor, ...]] | None:
    """:func:`box_axes_fn` for boxes given by the index of their (start, size) pairs in the box
    draw's table (the ``pick`` that :func:`~nda_plugins.transforms._sampling.box_sampler`
    returns), for images small enough for the indicator table (``None`` otherwise): the
    function of ``(pick, with_area=False)`` reads a table of the draw's pairs' indicators with
    ``pick`` itself, one op fewer than computing each pair's row from its start and size.
    ``bounds`` are the draw's side ranges, ``(h_lo, h_hi, w_lo, w_hi)``; the indicators equal
    :func:`box_axes`'s for the same boxes."""
    h, w = shape[-2], shape[-1]
    n = max(h, w)
    if n > _BOX_TABLE_MAX_SIDE:
        return None

    def make():
        starts, sizes = S.box_pairs(h, w, *bounds, device)[:2]
        return _range_table(n, dtype, device).index_select(0, starts * (n + 1) + sizes)

    by_pick = S._cached(("box_table_by_pick", h, w) + tuple(bounds) + (dtype,), device, make)
    views = _indicator_views(shape, n + 1)

    def from_pick(pick, with_area=False):
        return views(by_pick.index_select(0, pick.view(-1)), with_area)
    return from_pick


def _indicator_views(shape, row: int):
    """The function that views a freshly made ``(B * 2, row)`` block of indicators (each
    sample's row indicator, then its column indicator; on the table path, where ``row`` is
    ``max(H, W) + 1``, each followed by the range's length) as ``box_axes``'s ``(rows, cols)``
    and, with ``with_area``, the product of the two lengths. As ``as_strided`` views: a chain of
    slices and reshapes would be an op each."""
    b, h, w = shape[0], shape[-2], shape[-1]
    n = max(h, w)
    ones, zeros = _lead(len(shape)), (0,) * (len(shape) - 3)
    rows_view = ((b,) + ones + (h, 1), (2 * row,) + zeros + (1, 0))
    cols_view = ((b,) + ones + (1, w), (2 * row,) + zeros + (0, 1), row)
    value_view = ((b,) + (1,) * (len(shape) - 1), (2 * row,) + (0,) * (len(shape) - 1))

    def views(inside, with_area=False):
        rows, cols = inside.as_strided(*rows_view), inside.as_strided(*cols_view)
        if not with_area:
            return rows, cols
        # the two lengths are the rows' last values: one product of two views
        return rows, cols, torch.mul(inside.as_strided(*value_view, n), inside.as_strided(*value_view, row + n))
    return views


def box_weights(shape, start: torch.Tensor, size: torch.Tensor, dtype) -> torch.Tensor:
    """``(B, 1, ..., H, W)`` indicator of each sample's box, as 0/1 values of ``dtype``."""
    rows, cols = box_axes(shape, start, size, dtype)
    return rows * cols


_BOX_TABLE_MAX_SIDE = 64  # table of (n + 1)^2 rows of n + 1 values: about 1 MiB in float32 at n = 64


def _range_table(n: int, dtype, device) -> torch.Tensor:
    """``((n + 1) * (n + 1), n + 1)`` (cached per device): row ``start * (n + 1) + size`` is the
    indicator of ``[start, start + size)`` on ``range(n)``, then that range's length (``size``
    clipped to the axis; the area :func:`box_axes` returns is only read for boxes inside the
    image)."""
    def make():
        coords = torch.arange(n)
        start = torch.arange(n + 1).view(n + 1, 1, 1)
        size = torch.arange(n + 1).view(1, n + 1, 1)
        inside = (coords >= start) & (coords < start + size)
        table = torch.cat([inside, inside.sum(dim=2, keepdim=True)], dim=2)
        return table.to(dtype).view((n + 1) * (n + 1), n + 1)
    return S._cached(("box_table", n, dtype), device, make)


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


# -- box views: clone the batch, then write only the boxes -----------------------------------
#
# On the CPU an elementwise op with broadcast masks runs well below memory speed, and PyTorch's
# scatters (index_copy_, index_put_) move one element at a time. A copy between two strided
# views runs at memory speed, but a box sits at a different offset in every sample, which one
# strided view cannot express. A nested tensor can: each component has its own sizes, strides
# and storage offset. So for large images the box transforms clone the batch, view every
# sample's box as one component of a nested view over the clone's storage, and write all boxes
# with one ``torch._foreach_copy_``: the number of Python calls does not depend on the batch.
#
# Measured facts behind this (torch 2.13/2.14, CPU): ``copy_`` on the nested view itself fails
# (it needs a contiguous nested tensor), ``unbind`` does not; making the views costs about
# 1.2 us per sample, so small images keep the blend. Writing into the unbound views of an input
# that requires grad raises, so such inputs take the ``torch.where`` path. Tried and slower:
# index_copy_/index_put_ scatters of box runs (one element at a time, ~1 ns each), the same in
# 16-byte elements, Inductor's ``torch.where(box, x[partner], x)`` (reads both images everywhere:
# 0.21 of a clone), and ``_foreach_*.List_out`` (computes, then copies).


@functools.lru_cache(maxsize=None)
def nested_views_available() -> bool:
    """Whether this PyTorch has the nested view :func:`box_views` builds on, checked once by
    writing through two such views that cover part of a buffer. PyTorch 2.3 refuses views that
    do not cover their whole buffer; there (or where the function is missing), the box
    transforms take the blend or mask path."""
    if not hasattr(torch, "_nested_view_from_buffer"):
        return False
    buffer = torch.zeros(8)
    try:
        views = torch._nested_view_from_buffer(
            buffer, torch.tensor([[2], [2]]), torch.tensor([[1], [1]]), torch.tensor([1, 5])
        ).unbind()
        torch._foreach_copy_(list(views), [torch.ones(2), torch.full((2,), 2.0)])
    except (RuntimeError, TypeError, AttributeError, NotImplementedError):
        return False
    return torch.equal(buffer, torch.tensor([0.0, 1, 1, 0, 0, 2, 2, 0]))


def box_views(planes: torch.Tensor, start: torch.Tensor, size: torch.Tensor, m: int,
              sample: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Each sample's box of ``planes`` as a strided view, all made in one call.

    Args:
        planes: ``(B, P, H, W * m)`` contiguous CPU planes (see :func:`to_planes`).
        start, size: ``(B, 2)`` CPU boxes, as from :func:`~._sampling.boxes`; they must lie
            inside the image (the views are not bounds-checked).
        m: elements per pixel along the last axis.
        sample: ``(B,)`` long, whose planes box ``i`` is taken from (default: sample ``i``).

    Returns:
        ``B`` views sharing ``planes``' memory, view ``i`` shaped ``(P, height_i, width_i, m)``.
    """
    b, p, h, wm = planes.shape
    device = start.device
    first = S.arange(b, device) if sample is None else sample.long()  # replays may hold int32
    # offset = sample * per_sample + top * row + left * pixel, as one addmv. Offsets count from
    # the start of the storage, not of the buffer view.
    coef = S._cached(("box_view_coef", wm, m), device, lambda: torch.tensor([wm, m]))
    offsets = torch.addmv(first, start.long(), coef, beta=p * h * wm)
    if planes.storage_offset():
        offsets.add_(planes.storage_offset())
    sizes = S._cached(("box_view_sizes", b, p, m), device, lambda: torch.tensor([p, 0, 0, m]).repeat(b, 1)).clone()
    sizes[:, 1:3] = size
    strides = S._cached(("box_view_strides", b, p, h, wm, m), device,
                        lambda: torch.tensor([h * wm, wm, m, 1]).expand(b, 4).contiguous())
    return torch._nested_view_from_buffer(planes.view(-1), sizes, strides, offsets).unbind()


def paste_boxes(planes, source, source_sample, start, size, m: int) -> torch.Tensor:
    """``planes`` with each sample's box replaced by the same box of ``source[source_sample]``.

    Exact for any values (a copy); ``planes`` and ``source`` are ``(B, P, H, W * m)``
    contiguous CPU tensors of the same shape.
    """
    out = planes.clone()
    torch._foreach_copy_(box_views(out, start, size, m), box_views(source, start, size, m, source_sample))
    return out


def fill_boxes(planes, start, size, m: int, value: torch.Tensor) -> torch.Tensor:
    """``planes`` with each sample's box filled with ``value``, ``(B, P, m)`` per plane and
    element of a pixel (cast to ``planes``' dtype)."""
    out = planes.clone()
    b, p = planes.shape[:2]
    fill = value.to(planes.dtype).view(b, p, 1, 1, m).unbind(0)
    torch._foreach_copy_(box_views(out, start, size, m), fill)
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


def box_mean(x: torch.Tensor, mask: torch.Tensor, area: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (and per-frame) mean of ``x`` inside each sample's box.

    Every pixel enters its plane's sum, times 1 or 0, so the mean is exact for finite ``x``, and
    a NaN or inf anywhere in a plane (inside the box or not; ``inf * 0`` is NaN) makes that
    plane's mean non-finite: finite means show that all of ``x`` is finite.

    Args:
        x: the batch.
        mask: :func:`box_weights` (0/1) in the float dtype to compute in.
        area: each box's area in that dtype, shaped ``(B, 1, ..., 1)`` (from :func:`box_axes`).

    Returns:
        ``(mean, scratch)``: the mean, shaped like ``x`` with ``H, W`` reduced to ``1, 1``, in
        ``mask``'s dtype; and the x-sized ``x * mask`` it was summed from, which the caller may
        reuse as an output buffer.
    """
    work = x if x.dtype == mask.dtype else x.to(mask.dtype)
    product = work * mask
    return product.sum(dim=(-2, -1), keepdim=True).div_(area), product


def box_mean_by_matmul(x: torch.Tensor, mask: torch.Tensor, area: torch.Tensor) -> torch.Tensor | None:
    """:func:`box_mean`'s mean by one batched matmul of each sample's mask with its planes, or
    ``None`` where that is not known to be exact (see below).

    The matmul reads the batch once and writes only the sums, where :func:`box_mean` writes the
    product and reads it back (on the benchmark's (64, 3, 32, 32) batch about 0.7x an
    ``index_select`` less per call). Like :func:`box_mean` it relies on ``inf * 0`` and
    ``nan * 0`` being NaN, so that finite means show that all of ``x`` is finite; a BLAS that
    skipped the zero weights would break that, so :func:`matmul_sums_propagate` checks the
    kernel once per shape and layout, and where it fails the caller takes :func:`box_mean`.

    Args:
        x: a CPU batch (contiguous and channels-last images are read in place, other layouts
            through a contiguous copy).
        mask: :func:`box_weights` (0/1) in the float dtype to compute in, freshly made
            (contiguous).
        area: each box's area in that dtype, shaped ``(B, 1, ..., 1)`` (from :func:`box_axes`).

    Returns:
        the mean, shaped like ``x`` with ``H, W`` reduced to ``1, 1``, in ``mask``'s dtype.
    """
    work = x if x.dtype == mask.dtype else x.to(mask.dtype)
    channels_last = _channels_last(work)
    if not channels_last:  # other layouts through a contiguous copy: the same sums as for a contiguous x
        work = work.contiguous()
    mean = _matmul_mean(tuple(work.shape), channels_last, mask.dtype)
    return None if mean is None else mean(work, mask, area)


def box_mean_by_matmul_fn(x: torch.Tensor) -> Callable[..., torch.Tensor | None]:
    """:func:`box_mean_by_matmul` for batches laid out like ``x`` (same shape, dtype and
    strides), with masks in ``x``'s float dtype, as a function of ``(x, mask, area)``: for a
    contiguous or channels-last float32/float64 ``x`` the views and the kernel check are
    worked out here, once; for other layouts and dtypes it is :func:`box_mean_by_matmul`."""
    channels_last = _channels_last(x)
    if x.dtype not in (torch.float32, torch.float64) or not (channels_last or x.is_contiguous()):
        return box_mean_by_matmul
    mean = _matmul_mean(tuple(x.shape), channels_last, x.dtype)
    return _no_mean if mean is None else mean


def _no_mean(x, mask, area) -> None:
    return None


def _channels_last(t: torch.Tensor) -> bool:
    """Whether ``t`` is a channels-last image batch that is not also contiguous."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


@functools.lru_cache(maxsize=64)
def _matmul_mean(shape: tuple, channels_last: bool, dtype: torch.dtype) -> Callable[..., torch.Tensor] | None:
    """:func:`box_mean_by_matmul`'s mean for a contiguous or channels-last batch of one shape, as
    a function of ``(x, mask, area)`` made once per shape: it views each sample's planes as
    pixel-major ``(B, H * W, P)`` columns (one ``as_strided`` view over the storage; a view
    chain would be two ops) and multiplies the masks with them. ``None`` where
    :func:`matmul_sums_propagate` fails."""
    b, hw = shape[0], shape[-2] * shape[-1]
    p = math.prod(shape[1:-2])
    planes = ((b, hw, p), (hw * p, p, 1) if channels_last else (hw * p, 1, hw))
    if not matmul_sums_propagate(b, hw, p, planes[1], dtype):
        return None
    mask_shape, sums_shape = (b, 1, hw), shape[:-2] + (1, 1)

    def mean(x, mask, area):
        sums = torch.bmm(mask.view(mask_shape), x.as_strided(*planes))  # (B, 1, P): every plane's box sum
        return sums.view(sums_shape).div_(area)
    return mean


@functools.lru_cache(maxsize=64)
def matmul_sums_propagate(b: int, hw: int, p: int, stride: tuple, dtype: torch.dtype) -> bool:
    """Whether ``torch.bmm`` of ``(B, 1, H * W)`` masks with ``(B, H * W, P)`` planes laid out
    with ``stride`` turns a NaN or inf at a zero weight into a non-finite sum, as dense
    arithmetic does. Checked once per shape and layout (the kernel a BLAS picks depends on
    them), with masks that are mostly zero like a box's: a NaN next to the box in every plane,
    then an inf far from it (a kernel that skipped single zeros fails the first, one that
    skipped runs of zeros the second)."""
    masks = torch.zeros(b, 1, hw, dtype=dtype)
    masks[:, :, 0] = 1  # a one-pixel box at the start: every other weight is zero (hw >= 2)
    for where, value in ((1, float("nan")), (hw - 1, float("inf"))):
        planes = torch.zeros(b * hw * p, dtype=dtype).as_strided((b, hw, p), stride)
        planes[:, where, :] = value
        if torch.isfinite(torch.bmm(masks, planes)).any():
            return False
    return True


def box_mean_from_rows(planes: torch.Tensor, m: int, start: torch.Tensor, size: torch.Tensor,
                       cols: torch.Tensor, rows_max: int) -> torch.Tensor | None:
    """The per-plane box mean of large images, reading only the rows each box covers; ``None``
    when a value in those rows is not finite (the caller then takes an exact path).

    Every plane's box rows are summed with one ``embedding_bag`` (a weighted sum of selected
    rows): bag ``(b, plane)`` lists ``rows_max`` rows, the box's own rows with weight 1, then
    its last row again with weight 0 (already in cache, so it costs compute, not memory
    traffic); the fixed bag length keeps shapes static. The columns are then a dot product
    with the column indicator. Both steps multiply pixels outside the box by 0, which is exact only for finite
    values; a NaN or inf anywhere in the box rows makes a column sum non-finite, so one small
    sum over the column sums shows whether the mean is exact.

    Args:
        planes: ``(B, P, H, W * m)`` float32 or float64 planes (see :func:`to_planes`).
        m: elements per pixel along the last axis.
        start, size: ``(B, 2)`` boxes, as from :func:`~._sampling.boxes`.
        cols: the column indicator from :func:`box_axes` (``B * W`` values), in the planes'
            dtype.
        rows_max: the largest box height the boxes may have (the bag length).

    Returns:
        ``(B, P, m)`` means, or ``None``.
    """
    b, p, h, wm = planes.shape
    w = wm // m
    device = planes.device
    height = size[:, :1]
    offsets = S.arange(rows_max, device)
    rows = torch.minimum(offsets, height - 1).add_(start[:, :1])  # (B, rows_max) row of each bag entry
    weight = (offsets < height).to(planes.dtype).unsqueeze(1).expand(b, p, rows_max).reshape(b * p, rows_max)
    first_row = S._cached(("plane_rows", b, p, h), device, lambda: torch.arange(0, b * p * h, h).view(b, p, 1))
    index = (first_row + rows.unsqueeze(1)).view(b * p, rows_max)
    sums = torch.nn.functional.embedding_bag(
        index, planes.view(-1, wm), mode="sum", per_sample_weights=weight
    )  # (B * P, W * m): each plane's box rows, summed
    if not all_finite(sums):
        return None
    sums = (sums.view(b, p, w, m) * cols.reshape(b, 1, w, 1)).sum(dim=2)  # (B, P, m)
    return sums.div_(size.prod(dim=1).view(b, 1, 1))


#: batches at least this large (in bytes) are mixed by :func:`mix_rows` on the CPU. On one core
#: of the benchmark machine the one pass beat the gather-then-blend by 12-32% at 12 and 24 MiB,
#: and was even with it, faster in some runs and slower in others, at 6-7 MiB and at 48 MiB.
MIX_ROWS_MIN_BYTES = 8 << 20


@functools.lru_cache(maxsize=64)
def mix_row_length(n: int) -> int:
    """The row length :func:`mix_rows` cuts a sample of ``n`` elements into: the largest divisor
    of ``n`` in ``[256, 1024]`` (rows long enough to stream, short enough for ``embedding_bag``'s
    fast kernel), or 0 when ``n`` has none."""
    for d in range(min(n, 1024), 255, -1):
        if n % d == 0:
            return d
    return 0


def mix_rows_available(x: torch.Tensor) -> bool:
    """Whether :func:`mix_rows` is the faster way to mix ``x`` with its partners: a large float32
    or float64 CPU batch laid out as contiguous samples (either memory format), on a PyTorch
    built with FBGEMM (whose ``embedding_bag`` kernel this relies on), outside autograd and
    ``torch.compile``."""
    return (x.numel() * x.element_size() >= MIX_ROWS_MIN_BYTES  # first: small batches stop here
            and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad
            and not torch.compiler.is_compiling()
            and mix_row_length(x.numel() // x.shape[0]) > 0 and _has_fbgemm()
            and x.is_contiguous(memory_format=memory_format(x)))


@functools.lru_cache(maxsize=1)
def _has_fbgemm() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines


def mix_rows(planes: torch.Tensor, partner: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``gamma[i] * planes[i] + (1 - gamma[i]) * planes[partner[i]]`` for every sample, in one
    pass over the data (see :func:`mix_rows_available`).

    Every sample is cut into rows of :func:`mix_row_length` elements, and one ``embedding_bag``
    sums two weighted rows per output row: the sample's own (weight ``gamma``) and the same row
    of its partner (weight ``1 - gamma``). It reads both images and writes the result once,
    where gathering the partners and then blending makes two passes. For finite values the
    result equals ``torch.lerp(partner images, x, gamma)`` up to rounding. Non-finite values
    follow the weighted sum: NaN stays NaN, and an inf mixed with a finite value stays inf
    (``gamma`` is never 0 or 1), where lerp's formula can give NaN for it.

    Args:
        planes: ``(B, ...)`` contiguous float32/float64 CPU samples.
        partner: ``(B,)`` integer indices into the batch.
        gamma: ``(B,)`` weights of each sample's own image, in ``planes``' dtype.
    """
    b, n = planes.shape[0], planes.numel() // planes.shape[0]
    row = mix_row_length(n)
    r = n // row
    device = planes.device
    # index[i, j] = (own row, partner's row) of output row j of sample i: i * r + j and
    # partner[i] * r + j; weight[i, j] = (gamma[i], 1 - gamma[i]). One op each, from cached parts.
    own, pick = S._cached(("mix_rows_index", b, r), device, lambda: (
        torch.stack([torch.arange(b).view(b, 1) * r + torch.arange(r), torch.arange(r).expand(b, r)], 2),
        torch.tensor([0, 1]),
    ))
    index = torch.addcmul(own, partner.long().view(b, 1, 1), pick, value=r)
    base, sign = S._cached(("mix_rows_weight", r, planes.dtype), device, lambda: (
        torch.tensor([0.0, 1.0], dtype=planes.dtype).expand(1, r, 2), torch.tensor([1.0, -1.0], dtype=planes.dtype)))
    weight = torch.addcmul(base, gamma.view(b, 1, 1), sign)
    out = torch.nn.functional.embedding_bag(
        index.view(b * r, 2), planes.reshape(b * r, row), mode="sum", per_sample_weights=weight.view(b * r, 2))
    return out.view(planes.shape)


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
