"""Procedural images for the demos: dots with an exact count, simple shapes, and a dot counter.

Everything here is batched tensor code: no per-sample Python loops, randomness only from a
``torch.Generator``. Images are ``(B, 3, S, S)`` float tensors in ``[-1, 1]`` (background ``-1``),
the range a ``tanh`` generator produces.

Example:
    >>> import torch
    >>> from nda_plugins.demo.images import dots, count_components
    >>> g = torch.Generator().manual_seed(0)
    >>> x = dots(torch.full((4,), 3), generator=g)
    >>> count_components(x).tolist()
    [3, 3, 3, 3]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Side of one grid cell in pixels. Each dot lives inside one cell with a margin of one pixel, so
#: two dots are always separated by at least two background pixels and never touch (even under
#: 8-connectivity).
CELL = 8
#: Dot radius in pixels (a dot covers 10 to 14 pixels, depending on where its centre falls).
RADIUS = 2.0


def _check_generator(generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size: expected an int, got {type(size).__name__}")
    if size < CELL or size % CELL:
        raise ValueError(f"size: expected a positive multiple of {CELL}, got {size}")
    return size


def max_dots(size: int = 32) -> int:
    """The largest dot count :func:`dots` can draw on a ``size x size`` image (one per cell)."""
    return (_check_size(size) // CELL) ** 2


def dots(counts: torch.Tensor, *, size: int = 32, generator: torch.Generator | None = None,
         device: torch.device | str | None = None) -> torch.Tensor:
    """Draw images with exactly ``counts[i]`` separate dots of random colour and position.

    The image is cut into ``(size/8)^2`` cells of 8x8 pixels; each image picks ``counts[i]``
    distinct cells at random (by ranking uniform noise) and puts one dot of radius 2 in each,
    centred with a random jitter that keeps a one-pixel margin inside the cell. So dots never
    overlap or touch, and :func:`count_components` recovers the count exactly.

    Args:
        counts: ``(B,)`` integer tensor, each in ``[0, max_dots(size)]``.
        size: image side in pixels, a multiple of 8 (default 32: 16 cells).
        generator: ``torch.Generator`` for the randomness (on ``device``); ``None`` uses the
            global one.
        device: where to build the images (default: ``counts``'s device).

    Returns:
        ``(B, 3, size, size)`` float32 tensor in ``[-1, 1]``: background ``-1``; each dot has one
        random colour whose brightest channel is in ``[0.85, 1]`` (``[0.7, 1]`` before mapping to
        ``[-1, 1]``), so every dot is well above the background.

    Raises:
        TypeError: ``counts`` is not an integer tensor.
        ValueError: ``counts`` is not 1-D or has values outside ``[0, max_dots(size)]``.
    """
    _check_generator(generator)
    size = _check_size(size)
    if not isinstance(counts, torch.Tensor) or counts.dtype.is_floating_point or counts.dtype == torch.bool:
        raise TypeError(f"counts: expected an integer tensor of shape (B,), got {counts!r:.80}")
    if counts.dim() != 1:
        raise ValueError(f"counts: expected shape (B,), got {tuple(counts.shape)}")
    cells_per_side = size // CELL
    n_cells = cells_per_side ** 2
    # One cheap host check at construction time (not a training hot path).
    if counts.numel() and (int(counts.min()) < 0 or int(counts.max()) > n_cells):
        raise ValueError(f"counts: expected values in [0, {n_cells}] for size={size}, got "
                         f"[{int(counts.min())}, {int(counts.max())}]")
    device = torch.device(device) if device is not None else counts.device
    counts = counts.to(device)
    b = counts.shape[0]

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=device)

    # Rank uniform noise per image: the cells with rank < count get a dot (a uniform random subset).
    rank = rand(b, n_cells).argsort(dim=1).argsort(dim=1)
    used = rank < counts[:, None]                                               # (B, N)
    cell = torch.arange(n_cells, device=device)
    origin = torch.stack([cell // cells_per_side, cell % cells_per_side], dim=-1) * CELL  # (N, 2)
    # Centre in [origin + r + 0.5, origin + CELL - r - 1.5]: covered pixels stay in [1, CELL - 2].
    low = RADIUS + 0.5
    span = CELL - 2 * RADIUS - 2.0
    centre = origin.float() + low + span * rand(b, n_cells, 2)                  # (B, N, 2)
    colour = 0.2 + 0.8 * rand(b, n_cells, 3)                                     # (B, N, 3)
    # Rescale so the brightest channel is in [0.7, 1]: any hue, but always clearly visible.
    colour = colour / colour.amax(dim=-1, keepdim=True) * (0.7 + 0.3 * rand(b, n_cells, 1))

    coord = torch.arange(size, device=device, dtype=torch.float32)
    dy = coord[None, None, :, None] - centre[..., 0, None, None]                 # (B, N, S, 1)
    dx = coord[None, None, None, :] - centre[..., 1, None, None]                 # (B, N, 1, S)
    inside = ((dy * dy + dx * dx) <= RADIUS * RADIUS) & used[..., None, None]   # (B, N, S, S)
    # Dots are disjoint, so summing colour * coverage paints each pixel at most once.
    img = torch.einsum("bnhw,bnc->bchw", inside.float(), colour)
    return img * 2.0 - 1.0


def other_counts(k: int, n: int, *, offsets=(-2, -1, 1, 2), size: int = 32,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Dot counts for negatives: ``k + offset`` with the offset drawn uniformly from ``offsets``.

    Offsets that would leave ``[0, max_dots(size)]`` are dropped before drawing.

    Args:
        k: the target count.
        n: how many counts to draw.
        offsets: candidate offsets (non-zero ints).
        size: image side, to bound the counts.
        generator: ``torch.Generator`` for the draw.

    Returns:
        ``(n,)`` int64 tensor.

    Raises:
        ValueError: no offset gives a valid count, or an offset is 0.
    """
    _check_generator(generator)
    if any(o == 0 for o in offsets):
        raise ValueError(f"offsets: expected non-zero offsets (0 would give positives), got {tuple(offsets)}")
    valid = [k + o for o in offsets if 0 <= k + o <= max_dots(size)]
    if not valid:
        raise ValueError(f"offsets: no k+offset lies in [0, {max_dots(size)}] for k={k}, offsets={tuple(offsets)}")
    table = torch.tensor(valid, dtype=torch.long)
    idx = torch.randint(len(valid), (n,), generator=generator)
    return table[idx]


def shapes(n: int, kind: str, *, size: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` images of one large shape on a dark background.

    Used as the in-distribution / other-class sets of the anomaly demo. Each image has a random
    background colour (channels in ``[0, 0.3]``), one shape of random colour (channels in
    ``[0.5, 1]``), radius in ``[0.2, 0.35] * size`` and a centre that keeps the shape inside.

    Args:
        n: number of images.
        kind: ``"disc"``, ``"square"`` or ``"ring"``.
        size: image side in pixels (>= 8).
        generator: ``torch.Generator`` for the randomness.

    Returns:
        ``(n, 3, size, size)`` float32 tensor in ``[-1, 1]``.

    Raises:
        ValueError: unknown ``kind`` or too small ``size``.
    """
    _check_generator(generator)
    if kind not in ("disc", "square", "ring"):
        raise ValueError(f"kind: expected 'disc', 'square' or 'ring', got {kind!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size: expected an int >= 8, got {size!r}")

    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    radius = size * (0.2 + 0.15 * rand(n))                                       # (n,)
    centre = radius[:, None] + (size - 1 - 2 * radius[:, None]) * rand(n, 2)     # (n, 2)
    coord = torch.arange(size, dtype=torch.float32)
    dy = coord[None, :, None] - centre[:, 0, None, None]                         # (n, S, 1)
    dx = coord[None, None, :] - centre[:, 1, None, None]                         # (n, 1, S)
    r = radius[:, None, None]
    if kind == "disc":
        inside = dy * dy + dx * dx <= r * r
    elif kind == "square":
        inside = torch.maximum(dy.abs(), dx.abs()) <= r * 0.85
    else:
        dist = (dy * dy + dx * dx).sqrt()
        inside = (dist <= r) & (dist >= r * 0.55)
    background = 0.3 * rand(n, 3, 1, 1)
    colour = 0.5 + 0.5 * rand(n, 3, 1, 1)
    img = torch.where(inside[:, None], colour, background)
    return img * 2.0 - 1.0


def _bright_mask(images: torch.Tensor, threshold: float) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    # Brightest channel, mapped from [-1, 1] to [0, 1]: a dot of any colour is bright somewhere.
    return ((images.amax(dim=1) + 1.0) * 0.5) > threshold


def label_components(mask: torch.Tensor, *, max_iter: int | None = None) -> torch.Tensor:
    """Label the 8-connected components of a batch of binary masks.

    Label propagation: every foreground pixel starts with a unique label (its flat index + 1) and
    repeatedly takes the largest label in its 3x3 neighbourhood, restricted to the foreground,
    until nothing changes. Each component ends up labelled with the largest index it contains.
    Runs on the whole batch at once; convergence is checked every 8 iterations (evaluation code,
    so a host sync there is fine).

    Args:
        mask: ``(B, H, W)`` bool tensor.
        max_iter: safety bound on iterations (default ``H * W``, enough for any shape).

    Returns:
        ``(B, H, W)`` int64 tensor: 0 on background, the component label on foreground.

    Raises:
        ValueError: ``mask`` is not a ``(B, H, W)`` bool tensor.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 3:
        raise ValueError(f"mask: expected a (B, H, W) bool tensor, got {mask!r:.80}")
    b, h, w = mask.shape
    max_iter = h * w if max_iter is None else max_iter
    # float64 holds every label exactly (max_pool2d has no integer kernel on CPU).
    index = torch.arange(1, h * w + 1, dtype=torch.float64, device=mask.device).view(1, 1, h, w)
    fg = mask[:, None].to(torch.float64)
    labels = index * fg
    done = 0
    while done < max_iter:
        previous = labels
        for _ in range(8):
            labels = F.max_pool2d(labels, 3, stride=1, padding=1) * fg
        done += 8
        if torch.equal(labels, previous):
            break
    return labels[:, 0].to(torch.long)


def count_components(images_or_mask: torch.Tensor, *, threshold: float = 0.4, min_size: int = 3) -> torch.Tensor:
    """Count dots: 8-connected bright components with at least ``min_size`` pixels.

    Args:
        images_or_mask: ``(B, C, H, W)`` images in ``[-1, 1]`` (thresholded on the brightest
            channel after mapping to ``[0, 1]``), or a ``(B, H, W)`` bool mask.
        threshold: brightness threshold in ``[0, 1]`` for images.
        min_size: components smaller than this many pixels are ignored (speckle in generated
            samples is not a dot). A true dot of :func:`dots` has at least 10 pixels.

    Returns:
        ``(B,)`` int64 tensor of counts.

    Raises:
        ValueError: wrong shape or dtype.
    """
    if isinstance(images_or_mask, torch.Tensor) and images_or_mask.dtype == torch.bool:
        mask = images_or_mask
    else:
        mask = _bright_mask(images_or_mask, threshold)
    if mask.dim() != 3:
        raise ValueError(f"images_or_mask: expected a (B, H, W) bool mask, got shape {tuple(mask.shape)}")
    labels = label_components(mask)
    b, h, w = labels.shape
    flat = labels.view(b, h * w)
    # Component sizes: histogram of labels per image (offset by b * (H*W+1) so images don't mix).
    offset = torch.arange(b, device=flat.device)[:, None] * (h * w + 1)
    sizes = torch.bincount((flat + offset).view(-1), minlength=b * (h * w + 1)).view(b, h * w + 1)
    sizes[:, 0] = 0  # background
    return (sizes >= min_size).sum(dim=1)
