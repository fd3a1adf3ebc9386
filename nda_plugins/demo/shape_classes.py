"""A procedural ten-class image dataset for self-supervised demos and linear / kNN probes.

Each class is one silhouette (disc, square, ring, triangle, plus, X, half disc, diamond, L,
two dots) drawn at a random position and scale, in a random colour on a random dark background,
with a little pixel noise. The class is carried by the *global arrangement* of the silhouette,
which is what a jigsaw negative destroys, while colour, position and scale are nuisances that a
good representation ignores. Nothing is downloaded: images are drawn from a seed.

Everything is batched tensor code (no per-sample loops), randomness only from a
``torch.Generator``. Images are ``(N, 3, S, S)`` float32 in ``[-1, 1]``.

Example:
    >>> import torch
    >>> from nda_plugins.demo.shape_classes import shape_classes, CLASSES
    >>> x, y = shape_classes(2, generator=torch.Generator().manual_seed(0))
    >>> x.shape, y.tolist()[:4], len(CLASSES)
    (torch.Size([20, 3, 32, 32]), [0, 0, 1, 1], 10)
"""

from __future__ import annotations

import torch

__all__ = ["CLASSES", "shape_classes"]

#: Class names, in label order.
CLASSES = ("disc", "square", "ring", "triangle", "plus", "x", "half_disc", "diamond", "l_shape", "two_dots")


def _masks(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """All ten silhouettes at normalised coordinates ``u`` (right) and ``v`` (down).

    Args:
        u, v: ``(N, S, S)`` coordinates relative to each shape's centre, in units of its radius.

    Returns:
        ``(10, N, S, S)`` bool masks, one per class.
    """
    r2 = u * u + v * v
    au, av = u.abs(), v.abs()
    in_disc = r2 <= 1.0
    return torch.stack([
        in_disc,                                                          # disc
        torch.maximum(au, av) <= 0.8,                                     # square
        in_disc & (r2 >= 0.55 ** 2),                                      # ring
        (v >= -0.9) & (v <= 0.8) & (au <= (v + 0.9) * 0.55),              # triangle, apex up
        ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0)),        # plus
        in_disc & (((u - v).abs() <= 0.4) | ((u + v).abs() <= 0.4)),      # x
        in_disc & (v <= 0.1),                                             # half disc (top)
        au + av <= 1.0,                                                   # diamond
        ((au <= 1.0) & (v >= 0.4) & (v <= 1.0)) | ((u >= -1.0) & (u <= -0.4) & (av <= 1.0)),  # L
        ((u - 0.55) ** 2 + v * v <= 0.16) | ((u + 0.55) ** 2 + v * v <= 0.16),  # two dots
    ])


def shape_classes(
    n_per_class: int,
    *,
    size: int = 32,
    noise: float = 0.05,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_per_class`` images of each of the ten :data:`CLASSES`.

    Args:
        n_per_class: images per class (int >= 1).
        size: image side in pixels (int >= 8).
        noise: standard deviation of the Gaussian pixel noise (in ``[-1, 1]`` units), >= 0.
        generator: ``torch.Generator`` (on ``device``) for every random draw; ``None`` uses the
            global one.
        device: where to build the images (default: the generator's device, else CPU).

    Returns:
        ``(images, labels)``: ``images`` ``(10 * n_per_class, 3, size, size)`` float32 in
        ``[-1, 1]``, grouped by class (label ``i`` for rows ``i*n .. (i+1)*n - 1``); ``labels``
        ``(10 * n_per_class,)`` int64.

    Raises:
        TypeError: a wrong type for an argument.
        ValueError: ``n_per_class < 1``, ``size < 8`` or ``noise < 0``.
    """
    for name, value, low in (("n_per_class", n_per_class, 1), ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an int >= {low}, got {type(value).__name__} {value!r}")
        if value < low:
            raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise: expected a number >= 0, got {noise!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    k = len(CLASSES)
    n = k * n_per_class

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=device)

    labels = torch.arange(k, device=device).repeat_interleave(n_per_class)
    radius = size * (0.25 + 0.15 * rand(n))                                       # (N,)
    # Keep the whole silhouette (which fits the unit square around its centre) inside the image.
    margin = radius[:, None] + 0.5
    centre = margin + (size - 1 - 2 * margin).clamp_min(0) * rand(n, 2)           # (N, 2): (row, col)
    coord = torch.arange(size, device=device, dtype=torch.float32)
    v = (coord[None, :, None] - centre[:, 0, None, None]) / radius[:, None, None]  # (N, S, 1)
    u = (coord[None, None, :] - centre[:, 1, None, None]) / radius[:, None, None]  # (N, 1, S)
    u, v = torch.broadcast_tensors(u, v)
    masks = _masks(u, v)                                                          # (K, N, S, S)
    inside = masks.gather(0, labels.view(1, n, 1, 1).expand(1, n, size, size))[0]  # (N, S, S)
    background = 0.3 * rand(n, 3, 1, 1)
    colour = 0.45 + 0.55 * rand(n, 3, 1, 1)
    img = torch.where(inside[:, None], colour, background) * 2.0 - 1.0
    if noise > 0:
        img = img + noise * torch.randn(img.shape, generator=generator, device=device)
    return img.clamp_(-1.0, 1.0), labels
