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
