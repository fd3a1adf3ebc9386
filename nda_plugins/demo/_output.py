"""Output helpers shared by the demos: the run folder, JSON, PNG grids and optional matplotlib."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from .._png import write_png

def spread(values) -> float:
    """Population standard deviation over seeds; 0.0 for a single seed (the demos' "± std")."""
    values = list(values)
    return statistics.pstdev(values) if len(values) > 1 else 0.0


MATPLOTLIB_HINT = "matplotlib is not installed, so no plot was drawn; install it with: pip install nda-plugins[demo]"


def new_run_dir(out: str | Path) -> Path:
    """Create and return the run folder: ``out`` itself, or ``out-2``, ``out-3``, ... if taken.

    A previous run is never overwritten: when ``out`` exists and is not an empty folder, the first
    free numbered sibling is used instead (the caller prints where results went).

    Raises:
        ValueError: ``out`` exists and is a file.
    """
    out = Path(out)
    candidate, n = out, 1
    while candidate.exists():
        if candidate.is_dir() and not any(candidate.iterdir()):
            return candidate
        if n == 1 and candidate.is_file():
            raise ValueError(f"--out: expected a folder path, got the existing file {str(candidate)!r}")
        n += 1
        candidate = out.with_name(f"{out.name}-{n}")
    candidate.mkdir(parents=True)
    return candidate


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON (strict: no NaN)."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def to_uint8_grid(images: torch.Tensor, *, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """Tile ``(B, 3, H, W)`` images in ``[-1, 1]`` into one ``(H', W', 3)`` uint8 picture.

    Cells are separated by ``pad`` grey pixels; missing cells of the last row stay grey.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    nrows = math.ceil(b / ncol)
    canvas = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), 0.5)
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 0.5)
    full = torch.full((nrows * ncol, c, h, w), 0.5)
    full[:b] = pixels
    # (rows, cols, C, H, W) -> (C, rows, H, cols, W), written into the padded canvas by slicing.
    tiles = full.view(nrows, ncol, c, h, w).permute(2, 0, 3, 1, 4)
    view = canvas[:, pad:, pad:].unfold(1, h + pad, h + pad).unfold(2, w + pad, w + pad)
    # view: (C, rows, cols, H + pad, W + pad)
    view[..., :h, :w] = tiles.permute(0, 1, 3, 2, 4)
    return (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def save_grid(path: Path, images: torch.Tensor, *, nrow: int = 8, scale: int = 3) -> None:
    """Write ``images`` (see :func:`to_uint8_grid`) as a PNG file, each pixel a ``scale`` square."""
    grid = to_uint8_grid(images, nrow=nrow)
    write_png(path, grid.repeat_interleave(scale, dim=0).repeat_interleave(scale, dim=1))


def pyplot():
    """``matplotlib.pyplot`` with a file-only backend, or ``None`` when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_labelled_grid(
    path: Path,
    images: torch.Tensor,
    *,
    nrow: int = 8,
    captions: list[str] | None = None,
    caption_colours: list[str] | None = None,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    cell_pixels: int = 90,
    metadata: dict[str, str] | None = None,
) -> bool:
    """Write ``images`` as a grid with the text a reader needs: captions, row / column labels, a title.

    The images are tiled into one picture (each scaled up by a whole factor to about
    ``cell_pixels``, nearest neighbour) with a band under each row for the captions; the texts are
    drawn by matplotlib around and on it.

    Args:
        path: the PNG file to write.
        images: ``(B, 3, H, W)`` in ``[-1, 1]``, laid out row by row, ``nrow`` per row.
        nrow: images per row.
        captions: one short text per image, printed under it (e.g. its dot count).
        caption_colours: one matplotlib colour per caption (default black).
        row_labels: one label per row, printed left of the row.
        col_labels: one label per column, printed above the first row.
        title: printed above the grid.
        cell_pixels: the side a cell is scaled up to, at least (whole factors only).
        metadata: PNG text chunks to store in the file (e.g. ``{"Title": ...}``).

    Returns:
        ``False`` (and writes nothing) when matplotlib is missing: callers then fall back to
        :func:`save_grid`, which needs no extra package but carries no text.

    Raises:
        ValueError: ``images`` is not ``(B, 3, H, W)``, or a label list does not match the number
            of images, rows or columns.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    b, _, h, w = images.shape
    ncol = min(nrow, b)
    nrows = math.ceil(b / ncol)
    for name, values, expected in (("captions", captions, b), ("caption_colours", caption_colours, b),
                                   ("row_labels", row_labels, nrows), ("col_labels", col_labels, ncol)):
        if values is not None and len(values) != expected:
            raise ValueError(f"{name}: expected {expected} entries (one per "
                             f"{'row' if name == 'row_labels' else 'column' if name == 'col_labels' else 'image'}), "
                             f"got {len(values)}")
    plt = pyplot()
    if plt is None:
        return False
    zoom = max(1, math.ceil(cell_pixels / max(h, w)))
    ch, cw = h * zoom, w * zoom
    pad, band = 6, (16 if captions is not None else 0)
    step_y, step_x = ch + band + pad, cw + pad
    canvas = torch.ones(3, nrows * step_y + pad, ncol * step_x + pad)
    pixels = (images.detach().float().cpu().clamp(-1, 1) + 1) * 0.5
    pixels = pixels.repeat_interleave(zoom, dim=2).repeat_interleave(zoom, dim=3)
    tops = [pad + (i // ncol) * step_y for i in range(b)]
    lefts = [pad + (i % ncol) * step_x for i in range(b)]
    for i in range(b):  # figure drawing, not a hot path: one slice copy per thumbnail
        canvas[:, tops[i]:tops[i] + ch, lefts[i]:lefts[i] + cw] = pixels[i]
    height, width = canvas.shape[1], canvas.shape[2]
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.axis("off")
    for i in range(b):
        if captions is not None:
            colour = caption_colours[i] if caption_colours is not None else "black"
            ax.text(lefts[i] + cw / 2, tops[i] + ch + 2, captions[i], ha="center", va="top", fontsize=8,
                    color=colour)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            ax.text(-4, pad + r * step_y + ch / 2, label, ha="right", va="center", fontsize=9)
    if col_labels is not None:
        for c, label in enumerate(col_labels):
            ax.text(pad + c * step_x + cw / 2, -2, label, ha="center", va="bottom", fontsize=8)
    if title:
        ax.text(width / 2, -20 if col_labels is not None else -4, title, ha="center", va="bottom", fontsize=10)
    fig.savefig(path, dpi=100, metadata=metadata, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return True
