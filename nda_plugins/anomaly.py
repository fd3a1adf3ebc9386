"""Anomaly detection with a trained discriminator (the NDA paper's Table 5 protocol).

A discriminator trained with NDA scores in-distribution images higher than out-of-distribution
ones; the AUROC of its scores on an in-distribution folder against each OOD folder measures how
well (:func:`nda_plugins.metrics.auroc`). Every model goes through one path: a scorer
``module(x) -> (B, ...)`` built by a factory, its weights loaded from a checkpoint,
:func:`score_images` over batches, :func:`report` over folders.

* any ``torch.nn.Module``: :func:`load_scorer` with a factory ``"package.module:callable"`` and
  a checkpoint holding its ``state_dict`` (or ``{"state_dict": ...}`` / ``{"model": ...}``);
* a BigGAN-PyTorch discriminator: :func:`nda_plugins.adapters.biggan.anomaly.biggan_scorer`
  (from upstream's ``D.pth`` and the config saved in ``state_dict.pth``) through the same path.

Example:
    >>> import torch
    >>> scorer = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    >>> score_images(scorer, torch.rand(5, 3, 8, 8)).shape
    torch.Size([5])
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from . import metrics as _metrics
from ._imports import load_factory
from ._png import read_png

__all__ = ["IMAGE_SUFFIXES", "format_table", "load_factory", "load_image_folder", "load_scorer", "plot", "report", "score_images"]

#: file suffixes read from an image folder (PNG without Pillow; the others need Pillow).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _read_image(path: Path) -> torch.Tensor:
    """``(3, H, W)`` uint8 RGB."""
    if path.suffix.lower() == ".png":
        try:
            hwc = read_png(path)
        except ValueError:
            hwc = None
        if hwc is not None:
            if hwc.shape[2] in (1, 2):  # gray (+alpha)
                hwc = hwc[..., :1].expand(-1, -1, 3)
            return hwc[..., :3].permute(2, 0, 1).contiguous()
    try:
        import numpy as np
        from PIL import Image
    except ImportError as exc:
        raise ValueError(f"{path}: reading {path.suffix} files needs Pillow and NumPy (pip install pillow numpy)") from exc
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def load_image_folder(path: str | Path, *, size: int | None = None, limit: int | None = None) -> torch.Tensor:
    """Every image under ``path`` (recursively, sorted), as ``(N, 3, size, size)`` floats in ``[-1, 1]``.

    Args:
        path: a folder of images (sub-folders, e.g. one per class, are read too).
        size: resize every image to ``size`` x ``size`` (bilinear, antialiased); ``None`` keeps
            the size, which must then be the same for all images.
        limit: read at most this many images (the first in sorted order).

    Raises:
        ValueError: not a folder, no images, unreadable images or mixed sizes without ``size``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"path must be a folder of images, got {str(path)!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be an int >= 1 or None, got {size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    images = []
    for f in files:
        img = _read_image(f).unsqueeze(0).float().div_(127.5).sub_(1.0)
        if size is not None and tuple(img.shape[-2:]) != (size, size):
            img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        images.append(img)
    shapes = {tuple(i.shape) for i in images}
    if len(shapes) > 1:
        raise ValueError(f"{folder}: images have different sizes {sorted(shapes)}; pass size=")
    return torch.cat(images, 0)


def load_scorer(factory: str | Callable[..., torch.nn.Module], checkpoint: str | Path | None = None,
                **factory_kwargs: Any) -> torch.nn.Module:
    """Build ``factory(**factory_kwargs)`` and load its weights from ``checkpoint``.

    Args:
        factory: ``"package.module:callable"`` or a callable returning a ``torch.nn.Module``
            whose ``forward(x)`` gives one score per image (higher = more in-distribution).
        checkpoint: a ``torch.save`` file with the module's ``state_dict``, or a dict holding
            it under ``"state_dict"`` or ``"model"``; ``None`` when the factory loads weights.
        **factory_kwargs: passed to the factory.

    Returns:
        The module in eval mode.

    Raises:
        ValueError: a bad factory, a factory that does not return a module, or a checkpoint
            that does not fit it (missing / unexpected keys are named).
    """
    fn = load_factory(factory) if isinstance(factory, str) else factory
    if not callable(fn):
        raise TypeError(f"factory must be a 'module:callable' string or a callable, got {type(factory).__name__}")
    module = fn(**factory_kwargs)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"factory {factory!r} must return a torch.nn.Module, got {type(module).__name__}")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ValueError(f"checkpoint {str(checkpoint)!r} is not a file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict):
            for key in ("state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint {path} must hold a state_dict, got {type(state).__name__}")
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {path} does not fit the module from {factory!r}: {exc}") from exc
    return module.eval()


@torch.no_grad()
def score_images(scorer: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """``scorer``'s score per image: ``(N,)`` (outputs with more elements are averaged per image).

    Args:
        scorer: a module, ``scorer(x: (B, C, H, W)) -> (B, ...)``; runs on its own device.
        images: ``(N, C, H, W)``.
        batch_size: images per forward pass.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {getattr(images, 'shape', type(images).__name__)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    param = next(iter(scorer.parameters()), None)
    device = param.device if param is not None else images.device
    dtype = param.dtype if param is not None and param.is_floating_point() else images.dtype
    out = []
    for start in range(0, images.shape[0], batch_size):
        s = scorer(images[start:start + batch_size].to(device=device, dtype=dtype))
        if not isinstance(s, torch.Tensor) or s.shape[0] != min(batch_size, images.shape[0] - start):
            raise ValueError(f"scorer must return one row per image, got {getattr(s, 'shape', type(s).__name__)}")
        out.append(s.reshape(s.shape[0], -1).float().mean(dim=1).cpu())
    return torch.cat(out)


def report(scorer: torch.nn.Module, in_dir: str | Path, ood_dirs: Sequence[str | Path], *,
           size: int | None = None, batch_size: int = 64, limit: int | None = None) -> dict[str, Any]:
    """AUROC of ``scorer`` on an in-distribution folder against each OOD folder.

    Returns:
        ``{"in_distribution": {"path", "n", "mean_score"}, "ood": [{"path", "n", "mean_score",
        "auroc"}], "mean_auroc"}`` (JSON-ready Python numbers).
    """
    if isinstance(ood_dirs, (str, Path)) or not ood_dirs:
        raise ValueError(f"ood_dirs must be a non-empty list of folders, got {ood_dirs!r}")
    s_in = score_images(scorer, load_image_folder(in_dir, size=size, limit=limit), batch_size=batch_size)
    rows = []
    for d in ood_dirs:
        s_out = score_images(scorer, load_image_folder(d, size=size, limit=limit), batch_size=batch_size)
        rows.append({"path": str(d), "n": int(s_out.numel()), "mean_score": float(s_out.mean()),
                     "auroc": float(_metrics.auroc(s_in, s_out))})
    return {
        "in_distribution": {"path": str(in_dir), "n": int(s_in.numel()), "mean_score": float(s_in.mean())},
        "ood": rows,
        "mean_auroc": float(sum(r["auroc"] for r in rows) / len(rows)),
    }


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`report`'s result."""
    name_w = max([len("OOD folder")] + [len(r["path"]) for r in result["ood"]])
    lines = [f"in-distribution: {result['in_distribution']['path']} ({result['in_distribution']['n']} images, "
             f"mean score {result['in_distribution']['mean_score']:+.4f})",
             f"{'OOD folder':<{name_w}}  {'n':>6}  {'mean score':>10}  {'AUROC':>6}"]
    for r in result["ood"]:
        lines.append(f"{r['path']:<{name_w}}  {r['n']:>6}  {r['mean_score']:>+10.4f}  {r['auroc']:>6.4f}")
    lines.append(f"{'mean':<{name_w}}  {'':>6}  {'':>10}  {result['mean_auroc']:>6.4f}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str | Path) -> bool:
    """A bar chart of AUROC per OOD folder (chance at 0.5). ``False`` without matplotlib."""
    from .demo._output import pyplot

    plt = pyplot()
    if plt is None:
        return False
    names = [Path(r["path"]).name or r["path"] for r in result["ood"]]
    values = [r["auroc"] for r in result["ood"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(names) + 2), 3.2))
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC (in vs OOD)")
    ax.set_title(f"D score AUROC, in: {Path(result['in_distribution']['path']).name}")
    for i, v in enumerate(values):
        if not math.isnan(v):
            ax.text(i, v + 0.02, f"{v:.3f}", ha="center", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
