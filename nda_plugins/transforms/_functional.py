"""Deterministic tensor functions: given the sampled parameters, build the negatives.

Two ideas keep these close to the speed of a plain copy:

* Rearranging transforms (jigsaw, stitch) are a single ``index_select`` over contiguous *runs*
  of memory (a cell's row segment, a half row). The index is tiny next to the data, and
  ``index_select`` over runs of a few dozen elements or more streams like a copy.
* Masking / blending transforms (cutout, cutmix, mixup) are one fused elementwise op whose
  per-sample parameters broadcast as ``(B, 1, ..., 1)`` tensors, so the memory format of the
  input is kept by TensorIterator.

All functions take "planes": a contiguous ``(B, P, H, Wm)`` view of the input in which every
sample is ``P`` planes of ``H`` rows and ``Wm = W * m`` elements, where ``m`` is 1 for
channels-first memory and the number of channels for channels-last memory. See
:func:`to_planes`.
"""

from __future__ import annotations

from typing import Callable

import torch

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
    run = cw * m  # one cell's row segment is a contiguous run of `run` elements
    device = planes.device
    src_row, src_col = perm.div(grid, rounding_mode="floor"), perm.remainder(grid)
    # index of the run (b, p, cell-row i, row r, cell-col j) among all runs of `planes`
    cell = (src_row * (ch * grid) + src_col).view(b, 1, grid, 1, grid)
    sample = (torch.arange(b, device=device) * (p * h * grid)).view(b, 1, 1, 1, 1)
    plane = (torch.arange(p, device=device) * (h * grid)).view(1, p, 1, 1, 1)
    row = (torch.arange(ch, device=device) * grid).view(1, 1, 1, ch, 1)
    index = (sample + plane + row + cell).view(-1)
    return planes.view(-1, run).index_select(0, index).view(b, p, h, wm)


def stitch(
    planes: torch.Tensor,
    partner: torch.Tensor,
    vertical: torch.Tensor,
    partner_second: torch.Tensor,
    m: int = 1,
) -> torch.Tensor:
    """Join one half of each sample with the other half of its partner (same batch).

    Args:
        planes: ``(B, P, H, W * m)`` contiguous; ``H`` and ``W`` even.
        partner: ``(B,)`` long, index of each sample's partner in the batch.
        vertical: ``(B,)`` bool, split along a vertical line (left | right) instead of a
            horizontal one (top / bottom).
        partner_second: ``(B,)`` bool, the partner gives the right (or bottom) half instead of
            the left (or top) half.

    Returns:
        ``(B, P, H, W * m)`` contiguous tensor.
    """
    b, p, h, wm = planes.shape
    device = planes.device
    rows = torch.arange(h, device=device).view(1, h, 1)
    halves = torch.arange(2, device=device).view(1, 1, 2)
    second = torch.where(vertical.view(b, 1, 1), halves == 1, rows >= h // 2)  # (B, H, 2)
    take_partner = second == partner_second.view(b, 1, 1)
    source = torch.where(take_partner, partner.view(b, 1, 1), torch.arange(b, device=device).view(b, 1, 1))
    plane = torch.arange(p, device=device).view(1, p, 1, 1)
    index = ((source.unsqueeze(1) * p + plane) * h + rows.unsqueeze(1)) * 2 + halves.unsqueeze(1)
    return planes.view(-1, wm // 2).index_select(0, index.view(-1)).view(b, p, h, wm)


def half_mask(shape, vertical: torch.Tensor, partner_second: torch.Tensor) -> torch.Tensor:
    """The stitch mask (True where the partner's pixels go), broadcastable to ``shape``."""
    b, h, w = shape[0], shape[-2], shape[-1]
    device = vertical.device
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    second = torch.where(vertical.view(b, 1, 1), cols >= w // 2, rows >= h // 2)
    mask = second == partner_second.view(b, 1, 1)
    return mask.view((b,) + (1,) * (len(shape) - 3) + (h, w))


def box_mask(shape, top, left, box_h, box_w) -> torch.Tensor:
    """``(B, 1, ..., H, W)`` bool mask, True inside each sample's box."""
    b, h, w = shape[0], shape[-2], shape[-1]
    device = top.device
    rows = torch.arange(h, device=device).view(1, h)
    cols = torch.arange(w, device=device).view(1, w)
    in_rows = (rows >= top.view(b, 1)) & (rows < (top + box_h).view(b, 1))
    in_cols = (cols >= left.view(b, 1)) & (cols < (left + box_w).view(b, 1))
    lead = (1,) * (len(shape) - 3)
    return in_rows.view((b,) + lead + (h, 1)) & in_cols.view((b,) + lead + (1, w))


def box_mean(x: torch.Tensor, top, left, box_h, box_w) -> torch.Tensor:
    """Per-channel (and per-frame) mean of ``x`` inside each sample's box.

    Two batched matrix products with the row and column indicator vectors: one read of ``x``
    and no mask-sized temporary.

    Returns:
        float tensor of ``x``'s leading shape with ``H, W`` reduced to ``1, 1``.
    """
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    device = x.device
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    rows = torch.arange(h, device=device).view(1, h)
    cols = torch.arange(w, device=device).view(1, w)
    row_ind = ((rows >= top.view(b, 1)) & (rows < (top + box_h).view(b, 1))).to(work.dtype)
    col_ind = ((cols >= left.view(b, 1)) & (cols < (left + box_w).view(b, 1))).to(work.dtype)
    lead = (1,) * (x.dim() - 3)
    summed = work @ col_ind.view((b,) + lead + (w, 1))  # (B, ..., H, 1)
    summed = row_ind.view((b,) + lead + (1, h)) @ summed  # (B, ..., 1, 1)
    area = (box_h * box_w).to(work.dtype).view((b,) + lead + (1, 1))
    return summed / area


def cast_like(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Cast a float result to ``x``'s dtype (rounding and clamping for integer types)."""
    if value.dtype == x.dtype:
        return value
    if x.dtype.is_floating_point:
        return value.to(x.dtype)
    info = torch.iinfo(x.dtype)
    return value.round().clamp_(info.min, info.max).to(x.dtype)
