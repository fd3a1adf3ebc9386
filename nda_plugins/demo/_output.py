"""Output helpers shared by the demos: the run folder, JSON, PNG grids and optional matplotlib."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from .._png import write_png

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
    cell_inches: float = 0.9,
    metadata: dict[str, str] | None = None,
) -> bool:
    """Write ``images`` as a grid with text a reader needs: captions, row / column labels, a title.

    Args:
        path: the PNG file to write.
        images: ``(B, 3, H, W)`` in ``[-1, 1]``, laid out row by row, ``nrow`` per row.
        nrow: images per row.
        captions: one short text per image, printed under it (e.g. its dot count).
        caption_colours: one matplotlib colour per caption (default black).
        row_labels: one label per row, printed left of the row.
        col_labels: one label per column, printed above the first row.
        title: printed above the grid.
        cell_inches: size of one cell in the figure (100 pixels per inch).
        metadata: PNG text chunks to store in the file (e.g. ``{"Title": ...}``).

    Returns:
        ``False`` (and writes nothing) when matplotlib is missing: callers then fall back to
        :func:`save_grid`, which needs no extra package but carries no text.

    Raises:
        ValueError: a label list does not match the number of images, rows or columns.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a (B, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    b = images.shape[0]
    ncol = min(nrow, b)
    nrows = math.ceil(b / ncol)
    for name, values, expected in (("captions", captions, b), ("caption_colours", caption_colours, b),
                                   ("row_labels", row_labels, nrows), ("col_labels", col_labels, ncol)):
        if values is not None and len(values) != expected:
            raise ValueError(f"{name}: expected {expected} entries, got {len(values)}")
    plt = pyplot()
    if plt is None:
        return False
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 0.5).permute(0, 2, 3, 1).numpy()
    # Room for the texts: a caption band under each row, a label column on the left, a title on top.
    left = 1.6 if row_labels else 0.1
    top = (0.1 + 0.2 * (title.count("\n") + 1) if title else 0.1) + (0.35 if col_labels else 0.0)
    row_h = cell_inches + (0.3 if captions else 0.08)
    width, height = left + ncol * (cell_inches + 0.08) + 0.1, top + nrows * row_h + 0.1
    fig = plt.figure(figsize=(width, height))
    for i in range(b):
        r, c = divmod(i, ncol)
        x0 = left + c * (cell_inches + 0.08)
        y0 = height - top - (r + 1) * row_h + (row_h - cell_inches)
        ax = fig.add_axes((x0 / width, y0 / height, cell_inches / width, cell_inches / height))
        ax.imshow(pixels[i], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if captions is not None:
            colour = caption_colours[i] if caption_colours is not None else "black"
            ax.set_xlabel(captions[i], fontsize=8, labelpad=2, color=colour)
        if row_labels is not None and c == 0:
            ax.set_ylabel(row_labels[r], fontsize=9, rotation=0, ha="right", va="center", labelpad=6)
        if col_labels is not None and r == 0:
            ax.set_title(col_labels[c], fontsize=8, pad=3)
    if title:
        fig.text(0.5, 1 - 0.08 / height, title, ha="center", va="top", fontsize=10)
    fig.savefig(path, dpi=100, metadata=metadata, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return True
