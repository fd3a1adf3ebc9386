"""MoCo-v2's view augmentations, batched on the images' device with per-sample parameters.

Random resized crop (scale ``[0.2, 1]``, aspect ``[3/4, 4/3]``) with a horizontal flip folded
into one affine ``grid_sample``; colour jitter (brightness, contrast, saturation 0.4, applied
with probability 0.8); grayscale with probability 0.2. Gaussian blur is left out, as in the
small-image (CIFAR) MoCo-v2 recipes. Every parameter is a tensor drawn from one
``torch.Generator``, so a step's views are a pure function of its generator seed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["moco_v2_views"]

_GRAY = (0.299, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def moco_v2_views(
    x: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.2, 1.0),
    jitter: float = 0.4,
) -> torch.Tensor:
    """One random MoCo-v2 view of every image.

    Args:
        x: ``(B, 3, H, W)`` images in ``[-1, 1]``.
        generator: ``torch.Generator`` on ``x``'s device.
        scale: range of the crop's area as a fraction of the image.
        jitter: strength of brightness / contrast / saturation jitter.

    Returns:
        ``(B, 3, H, W)`` views in ``[-1, 1]``.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float (B, 3, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    b = x.shape[0]
    dev, dt = x.device, x.dtype

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev, dtype=dt)

    # Crop: area fraction s and log-uniform aspect r give half-sizes (in [-1, 1] units) sx, sy.
    area = scale[0] + (scale[1] - scale[0]) * rand(b)
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rand(b)
    ratio = log_r.exp()
    sx = (area * ratio).sqrt().clamp(max=1.0)
    sy = (area / ratio).sqrt().clamp(max=1.0)
    cx = (1 - sx) * (2 * rand(b) - 1)
    cy = (1 - sy) * (2 * rand(b) - 1)
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0).to(dt)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=dt)
    theta[:, 0, 0] = sx * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # Colour jitter in [0, 1] space, each factor in [1 - jitter, 1 + jitter], applied with p = 0.8.
    out = (out + 1) * 0.5
    apply = (rand(b, 1, 1, 1) < 0.8).to(dt)
    brightness = 1 + apply * jitter * (2 * rand(b, 1, 1, 1) - 1)
    contrast = 1 + apply * jitter * (2 * rand(b, 1, 1, 1) - 1)
    saturation = 1 + apply * jitter * (2 * rand(b, 1, 1, 1) - 1)
    out = (out * brightness).clamp(0, 1)
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp(0, 1)
    gray = _gray(out)
    out = ((out - gray) * saturation + gray).clamp(0, 1)
    out = torch.where(rand(b, 1, 1, 1) < 0.2, _gray(out).expand_as(out), out)
    return out * 2 - 1
