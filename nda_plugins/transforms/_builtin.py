"""The built-in negative transforms (NDA paper, Sinha et al. 2021, section 3 and appendix).

Every class is a thin shell: ``sample`` draws per-sample parameters with
:mod:`._sampling`, ``apply`` calls the pure functions of :mod:`._functional`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _functional as F
from . import _sampling as S
from ._base import NegativeTransform, check_images


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_float(name: str, value: Any, low: float, high: float, *, low_open=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if bad_low or value > high or math.isnan(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")
    return value


def _partner_params(x, generator, external_partner: bool) -> dict[str, torch.Tensor]:
    if external_partner:
        return {}
    return {"partner": S.partners(x.shape[0], generator=generator, device=x.device)}


def _partner_images(x, params, partner):
    return partner if partner is not None else x.index_select(0, params["partner"])


def _keep_format(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Make ``out`` follow ``x``'s memory format (a no-op when it already does)."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous():
        return out.contiguous(memory_format=torch.channels_last_3d)
    return out.contiguous()


class Jigsaw(NegativeTransform):
    """Jigsaw-K: cut each image into a ``grid x grid`` tiling and shuffle the cells.

    Each sample draws its own permutation, never the identity (for ``grid = 2`` uniformly over
    the 23 others). The NDA paper finds ``grid = 2`` works best.

    Args:
        grid: cells per side, ``>= 2``.

    Example:
        >>> t = Jigsaw(grid=2)
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> t(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([1, 1, 4, 4])
    """

    name = "jigsaw"

    def __init__(self, grid: int = 2) -> None:
        super().__init__()
        self.grid = _check_int("grid", grid, 2)

    def sample(self, x, generator, *, external_partner=False):
        h, w = x.shape[-2:]
        if h < self.grid or w < self.grid:
            raise ValueError(f"jigsaw grid={self.grid} needs images of at least {self.grid}x{self.grid}, got {h}x{w}")
        perm = S.non_identity_permutations(x.shape[0], self.grid**2, generator=generator, device=x.device)
        return {"perm": perm}

    def apply(self, x, params, partner):
        planes, m, restore = F.to_planes(x)
        return restore(F.jigsaw(planes, params["perm"], self.grid, m))

    def extra_repr(self):
        return f"grid={self.grid}"


class Stitch(NegativeTransform):
    """Stitch: one half of the image joined with the other half of a different image.

    Per sample: the split is vertical (left | right) or horizontal (top / bottom) at random, and
    which half comes from the partner is random (parameter ``mode``, see
    :data:`nda_plugins.transforms._functional.STITCH_MODES`).
    """

    name = "stitch"
    pairwise = True

    def sample(self, x, generator, *, external_partner=False):
        params = _partner_params(x, generator, external_partner)
        params["mode"] = torch.randint(0, 4, (x.shape[0],), generator=generator, device=x.device)
        return params

    def apply(self, x, params, partner):
        h, w = x.shape[-2:]
        if h < 2 or w < 2:
            raise ValueError(f"stitch needs images of at least 2x2, got {h}x{w}")
        if partner is None and h % 2 == 0 and w % 2 == 0:
            planes, m, restore = F.to_planes(x)
            return restore(F.stitch(planes, params["partner"], params["mode"], m))
        mask = F.half_mask(x.shape, params["mode"])
        return _keep_format(F.select(x, _partner_images(x, params, partner), mask), x)


class _BoxTransform(NegativeTransform):
    def __init__(self, low: float = 1 / 3, high: float = 1 / 2) -> None:
        super().__init__()
        self.low = _check_float("low", low, 0.0, 1.0, low_open=True)
        self.high = _check_float("high", high, 0.0, 1.0, low_open=True)
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high}")

    def sample(self, x, generator, *, external_partner=False):
        h, w = x.shape[-2:]
        if self.pairwise:
            params = _partner_params(x, generator, external_partner)
        else:
            params = {}
        params["start"], params["size"] = S.boxes(
            x.shape[0], h, w, low=self.low, high=self.high, generator=generator, device=x.device
        )
        return params

    def _axes(self, x, params, dtype):
        return F.box_axes(x.shape, params["start"], params["size"], dtype)

    def extra_repr(self):
        return f"low={self.low:.4g}, high={self.high:.4g}"


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    """The float dtype a transform computes in: ``x``'s for float32/64, float32 otherwise."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


class Cutout(_BoxTransform):
    """Cutout: a box with each side in ``[low, high]`` of the image filled with its own mean.

    The fill is the per-channel (and, for video, per-frame) mean of the pixels the box covers,
    so the negative keeps the image's colour statistics but loses the structure in the box.
    """

    name = "cutout"

    def apply(self, x, params, partner):
        work = _work_dtype(x)
        rows, cols = self._axes(x, params, work)
        mask = rows * cols
        if x.dtype == work and max(x.shape[-2:]) > F._BOX_TABLE_MAX_SIDE:
            # Large images: the mean from the box rows alone, so the blend is the only pass
            # over the whole batch.
            mean = F.box_mean_from_rows(x, params["start"], params["size"], cols)
            return _keep_format(torch.lerp(x, mean, mask), x)
        mean, scratch = F.box_mean(x, mask)
        if x.dtype == work:  # write the result over the x-sized scratch: no new batch buffer
            return _keep_format(torch.lerp(x, mean, mask, out=scratch), x)
        if not x.dtype.is_floating_point:
            mean = mean.round()  # the fill a uint8 image can hold
        return _keep_format(F.select(x, mean, mask), x)


class CutMix(_BoxTransform):
    """CutMix: the same kind of box as cutout, filled with the same box of a partner image."""

    name = "cutmix"
    pairwise = True

    def apply(self, x, params, partner):
        work = x.dtype if x.dtype.is_floating_point else torch.float32
        rows, cols = self._axes(x, params, work)
        if partner is None and x.dtype.is_floating_point:
            # Blend into the gathered partner batch (elementwise, so writing over an input is
            # safe): one batch-sized allocation.
            other = x.index_select(0, params["partner"])
            return _keep_format(torch.lerp(x, other, rows * cols, out=other), x)
        return _keep_format(F.select(x, _partner_images(x, params, partner), rows * cols), x)


class Mixup(NegativeTransform):
    """Mixup: ``gamma * x + (1 - gamma) * partner``, one ``gamma`` per sample.

    ``gamma = low + (high - low) * g`` with ``g ~ Beta(alpha, alpha)``: any ``alpha > 1`` puts the
    density's peak at 0.5 (an even blend), and ``high < 1`` keeps every negative a real blend
    rather than a near-copy of its source.

    Args:
        alpha: positive integer Beta parameter (2 by default; 1 is uniform).
        low, high: the range ``gamma`` is mapped into.
    """

    name = "mixup"
    pairwise = True

    def __init__(self, alpha: int = 2, low: float = 0.1, high: float = 0.9) -> None:
        super().__init__()
        self.alpha = _check_int("alpha", alpha, 1)
        self.low = _check_float("low", low, 0.0, 1.0)
        self.high = _check_float("high", high, 0.0, 1.0)
        if not self.low < self.high or self.high >= 1.0:
            raise ValueError(f"mixup needs 0 <= low < high < 1, got low={self.low}, high={self.high}")

    def sample(self, x, generator, *, external_partner=False):
        params = _partner_params(x, generator, external_partner)
        params["gamma"] = S.beta_symmetric(
            x.shape[0], self.alpha, generator=generator, device=x.device, low=self.low, high=self.high
        )
        return params

    def apply(self, x, params, partner):
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        if x.dtype.is_floating_point:
            gamma = params["gamma"].to(x.dtype).view(shape)
            if partner is None:  # blend into the gathered partner batch in place
                return _keep_format(x.index_select(0, params["partner"]).lerp_(x, gamma), x)
            return _keep_format(torch.lerp(partner, x, gamma), x)
        gamma = params["gamma"].view(shape)
        other = _partner_images(x, params, partner)
        return _keep_format(F.cast_like(torch.lerp(other.float(), x.float(), gamma), x), x)

    def extra_repr(self):
        return f"alpha={self.alpha}, low={self.low:.4g}, high={self.high:.4g}"


class Noise(NegativeTransform):
    """Additive Gaussian noise: ``x + std * N(0, 1)`` (``std`` in units of 255 for uint8).

    A valid but weak negative (NDA paper); useful as a baseline.
    """

    name = "noise"
    frame_params = False  # independent noise per pixel and frame

    def __init__(self, std: float = 0.5) -> None:
        super().__init__()
        self.std = _check_float("std", std, 0.0, float("inf"), low_open=True)

    def sample(self, x, generator, *, external_partner=False):
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        eps = torch.empty_like(x, dtype=dtype)
        if x.device.type == "cpu" and eps.numel() >= 2 * S.NORMAL_CHUNK:
            S.normal_parallel_(eps, generator=generator)
        else:
            eps.normal_(generator=generator)
        return {"eps": eps}

    def apply(self, x, params, partner):
        eps = params["eps"]
        if x.dtype.is_floating_point:
            return torch.add(x, eps, alpha=self.std)
        return F.cast_like(torch.add(x.to(eps.dtype), eps, alpha=self.std * 255.0), x)

    def extra_repr(self):
        return f"std={self.std:.4g}"


class FromSource(NegativeTransform):
    """Negatives drawn from a user-given source: other classes, other numerosities, ...

    Args:
        source: a tensor ``(N, C, H, W)`` / ``(N, C, T, H, W)`` (fast path: one ``index_select``)
            or a map-style dataset whose items are tensors or ``(tensor, label)`` pairs.
        labels: optional ``(N,)`` labels of a tensor source; :meth:`draw` returns them.

    The source is the user's promise that its samples lie outside the data distribution; this
    transform does not (and cannot) check that a draw differs from the real batch.
    """

    name = "source"
    distinct_from_source = False
    frame_params = False  # draws whole clips

    def __init__(self, source: Any = None, labels: torch.Tensor | None = None) -> None:
        super().__init__()
        if source is None:
            raise ValueError("transform 'source' needs source=<tensor or dataset> of negative samples")
        if isinstance(source, torch.Tensor):
            check_images(source, "source")
        elif not (hasattr(source, "__getitem__") and hasattr(source, "__len__")):
            raise TypeError(f"source must be a tensor or a map-style dataset, got {type(source).__name__}")
        if len(source) == 0:
            raise ValueError("source must hold at least one sample, got an empty source")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape[:1] != (len(source),):
                got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
                raise ValueError(f"labels must be a tensor with {len(source)} rows (one per source sample), got {got}")
        self.source = source
        self.labels = labels

    def sample(self, x, generator, *, external_partner=False):
        n = len(self.source)
        return {"index": S.randint(0, n - 1, (x.shape[0],), generator=generator, device=x.device)}

    def _gather(self, index: torch.Tensor):
        if isinstance(self.source, torch.Tensor):
            index = index.to(self.source.device)
            images = self.source.index_select(0, index)
            labels = None if self.labels is None else self.labels.index_select(0, index.to(self.labels.device))
            return images, labels
        items = [self.source[i] for i in index.tolist()]  # dataset path: host-side loading
        if isinstance(items[0], (tuple, list)):
            images = torch.stack([torch.as_tensor(it[0]) for it in items])
            labels = torch.as_tensor([int(it[1]) for it in items])
        else:
            images, labels = torch.stack([torch.as_tensor(it) for it in items]), None
        return images, labels

    def draw(self, n: int, *, generator=None, device=None, like: torch.Tensor | None = None):
        """Draw ``n`` source samples (and their labels, if known)."""
        device = like.device if like is not None else torch.device(device or "cpu")
        index = S.randint(0, len(self.source) - 1, (n,), generator=generator, device=device)
        images, labels = self._gather(index)
        if like is not None:
            images = _keep_format(images.to(device=like.device, dtype=like.dtype), like)
        return images, labels

    def apply(self, x, params, partner):
        images, _ = self._gather(params["index"])
        if images.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"source samples have shape {tuple(images.shape[1:])} but x has samples of shape "
                f"{tuple(x.shape[1:])}; they must match"
            )
        return _keep_format(images.to(device=x.device, dtype=x.dtype), x)

    def extra_repr(self):
        return f"n={len(self.source)}"


BUILTINS: dict[str, type[NegativeTransform]] = {
    cls.name: cls for cls in (Jigsaw, Stitch, Cutout, CutMix, Mixup, Noise, FromSource)
}


def example_options(name: str, x: torch.Tensor) -> dict[str, Any]:
    """Options that make transform ``name`` buildable for a test batch like ``x``."""
    if name == "source":
        return {"source": x.flip(-1, -2).contiguous()}
    return {}
