"""COP-Gen: contrastive optimal positives from a frozen generator's latent space (Li et al. 2022).

A *navigator* ``z' = z + T(z)`` (``T`` a two-layer MLP of width ``latent_dim``) moves each latent
so that ``(G(z), G(z'))`` is a positive pair with as little mutual information as possible. A
mutual-information *estimator* (an image encoder) is trained adversarially against it:

- the estimator **minimises** the InfoNCE loss of the (augmented) pairs, tightening its lower
  bound of ``I(G(z); G(z'))``;
- the navigator **maximises** that loss (minimises the estimated MI), under the semantic-consistency
  constraint that ``z'`` stays in ``z``'s neighbourhood of the latent space, where a pretrained
  generator keeps the semantics: a penalty on the per-sample RMS step ``||T(z)|| / sqrt(d)`` above
  ``radius`` (our reading of the constraint: the reference enforces it only through the small
  initial step and the choice of checkpoint, watched through the mean/std of ``z' - z``).

The generator stays frozen (gradients flow *through* it to ``z'``). The image augmentations both
views get before the estimator (random resized crop, flip, colour jitter, grayscale: SimCLR's) are
one batched, differentiable pass on the images' device (:func:`augment`).

Pure torch: the mmengine models and datasets built on this live in
:mod:`nda_plugins.mmengine.copgen`.

Example:
    >>> import torch
    >>> G = torch.nn.Sequential(torch.nn.Linear(8, 3 * 16 * 16), torch.nn.Unflatten(1, (3, 16, 16)))
    >>> cop = COPGen(G, latent_dim=8)
    >>> out = cop.losses(torch.randn(4, 8), generator=torch.Generator().manual_seed(0))
    >>> sorted(out)  # doctest: +NORMALIZE_WHITESPACE
    ['anchor', 'consistency', 'features_anchor', 'features_positive', 'info_nce', 'positive',
     'step', 'z_new']
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._imports import load_factory
from .contrastive import nda_info_nce

__all__ = [
    "COPGen",
    "Estimator",
    "Navigator",
    "apply_augment",
    "augment",
    "consistency_penalty",
    "default_generator",
    "generate_pairs",
    "load_generator",
    "pair_info_nce",
    "read_pairs",
    "sample_augment_params",
    "step_stats",
]


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
    return v


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_latents(z: object, latent_dim: int | None = None) -> torch.Tensor:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z must be a torch.Tensor (B, latent_dim), got {type(z).__name__}")
    if z.dim() != 2 or not z.is_floating_point():
        raise ValueError(f"z must be a floating (B, latent_dim) tensor, got {z.dtype} of shape {tuple(z.shape)}")
    if latent_dim is not None and z.shape[1] != latent_dim:
        raise ValueError(f"z must have latent_dim={latent_dim} columns, got shape {tuple(z.shape)}")
    return z


# ----------------------------------------------------------------------------------------------
# Navigator
# ----------------------------------------------------------------------------------------------


class Navigator(nn.Module):
    """``z' = z + T(z)``, ``T = Linear(d, h) -> ReLU -> Linear(h, d)`` with ``h = d`` by default.

    The last layer starts scaled by ``init_scale`` with a zero bias, so ``||T(z)||`` starts at
    about ``init_scale`` times that of a default-initialised MLP: the first positives are
    almost the anchors and the navigator moves away from there.

    Args:
        latent_dim: ``d``, the generator's latent size.
        hidden: hidden width ``h`` (default ``d``, as in COP-Gen).
        init_scale: factor on the last layer's initial weights, in ``(0, 1]``.

    Example:
        >>> nav = Navigator(16)
        >>> z = torch.randn(4, 16)
        >>> bool((nav(z) - z).norm() < 0.05 * z.norm())
        True
    """

    def __init__(self, latent_dim: int, hidden: int | None = None, init_scale: float = 1e-2) -> None:
        super().__init__()
        self.latent_dim = _check_int("latent_dim", latent_dim, 1)
        hidden = self.latent_dim if hidden is None else _check_int("hidden", hidden, 1)
        scale = _check_positive("init_scale", init_scale)
        if scale > 1:
            raise ValueError(f"init_scale must be in (0, 1], got {init_scale!r}")
        self.net = nn.Sequential(nn.Linear(self.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.latent_dim))
        with torch.no_grad():
            self.net[2].weight.mul_(scale)
            self.net[2].bias.zero_()

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """``T(z)``, ``(B, d)``."""
        return self.net(_check_latents(z, self.latent_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z + T(z)``, ``(B, d)``."""
        return z + self.step(z)


def consistency_penalty(step: torch.Tensor, radius: float) -> torch.Tensor:
    """Semantic-consistency penalty: ``mean(relu(rms(T(z)) - radius) ** 2)``.

    Args:
        step: ``(B, d)`` navigator steps ``T(z)``.
        radius: allowed per-sample RMS step (``||T(z)|| / sqrt(d)``), ``>= 0``.

    Returns:
        A scalar; zero while every step is within ``radius``.
    """
    radius = _check_positive("radius", radius, allow_zero=True)
    rms = step.pow(2).mean(dim=1).sqrt()
    return F.relu(rms - radius).pow(2).mean()


@torch.no_grad()
def step_stats(z: torch.Tensor, z_new: torch.Tensor) -> dict[str, torch.Tensor]:
    """Monitoring scalars (0-dim tensors, no host sync): norm of ``z' - z`` per sample (mean/std),
    and the mean/std of ``z' - z`` and of ``z'`` over all entries (the reference's curves)."""
    diff = z_new - z
    norm = diff.norm(dim=1)
    return {
        "step_norm_mean": norm.mean(),
        "step_norm_std": norm.std() if norm.numel() > 1 else torch.zeros_like(norm.mean()),
        "step_mean": diff.mean(),
        "step_std": diff.std(),
        "z_new_mean": z_new.mean(),
        "z_new_std": z_new.std(),
    }


# ----------------------------------------------------------------------------------------------
# Batched differentiable augmentations (SimCLR's, on the device)
# ----------------------------------------------------------------------------------------------

# ITU-R 601 luma; YIQ for the hue rotation (differentiable, no HSV branches).
_LUMA = (0.299, 0.587, 0.114)
_RGB2YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def sample_augment_params(
    batch: int,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: float = 0.5,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    jitter_p: float = 0.8,
    gray_p: float = 0.2,
) -> dict[str, torch.Tensor]:
    """Draw per-sample augmentation parameters as tensors on ``device``.

    Returns:
        ``theta`` ``(B, 2, 3)`` affine crop+flip in normalised coordinates; ``brightness``,
        ``contrast``, ``saturation`` ``(B,)`` factors (1 where jitter is off), ``hue`` ``(B,)`` in
        turns (0 where off); ``gray`` ``(B,)`` bool.
    """
    device = torch.device(device)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator lives on {generator.device} but the images are on {device}")

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=device)

    lo, hi = scale
    area = lo + (hi - lo) * rand(batch)
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * rand(batch)
    r = log_r.exp()
    w = (area * r).sqrt().clamp(max=1.0)  # crop width / image width
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (1 - w) * (2 * rand(batch) - 1)
    cy = (1 - h) * (2 * rand(batch) - 1)
    sign = torch.where(rand(batch) < flip, -1.0, 1.0)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w * sign, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)

    on = rand(batch) < jitter_p
    b, c, s, hue = jitter

    def factor(strength):
        f = 1 - strength + 2 * strength * rand(batch)
        return torch.where(on, f, torch.ones_like(f))

    brightness, contrast, saturation = factor(b), factor(c), factor(s)
    hue_turns = torch.where(on, hue * (2 * rand(batch) - 1), zero)
    gray = rand(batch) < gray_p
    return {"theta": theta, "brightness": brightness, "contrast": contrast, "saturation": saturation,
            "hue": hue_turns, "gray": gray}


def _gray(x: torch.Tensor) -> torch.Tensor:
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * luma).sum(dim=1, keepdim=True)


def apply_augment(images: torch.Tensor, params: dict[str, torch.Tensor], *, out_size: int | None = None) -> torch.Tensor:
    """Apply :func:`sample_augment_params`' parameters: crop+flip (one ``grid_sample``), then
    brightness, contrast, saturation, hue (a rotation in YIQ), grayscale; clamped to the range
    after each step as torchvision does. Differentiable in ``images``.

    Args:
        images: ``(B, 3, H, W)`` float images in ``[-1, 1]``.
        params: the dict of :func:`sample_augment_params` for ``B`` samples.
        out_size: output side (default ``H``).

    Returns:
        ``(B, 3, out_size, out_size)`` in ``[-1, 1]``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"images must be floating point in [-1, 1], got {images.dtype}")
    batch = images.shape[0]
    if params["theta"].shape[0] != batch:
        raise ValueError(f"params are for {params['theta'].shape[0]} samples, images has {batch}")
    size = images.shape[-1] if out_size is None else _check_int("out_size", out_size, 1)
    theta = params["theta"].to(images.dtype)
    grid = F.affine_grid(theta, [batch, 3, size, size], align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    x = ((x + 1) / 2).clamp(0, 1)

    def col(name):
        return params[name].to(x.dtype).view(batch, 1, 1, 1)

    x = (x * col("brightness")).clamp(0, 1)
    mean = _gray(x).mean(dim=(2, 3), keepdim=True)
    x = (mean + col("contrast") * (x - mean)).clamp(0, 1)
    x = (_gray(x) + col("saturation") * (x - _gray(x))).clamp(0, 1)
    # Hue: rotate the chroma (I, Q) plane by 2*pi*hue.
    yiq = torch.tensor(_RGB2YIQ, dtype=x.dtype, device=x.device)
    angle = 2 * math.pi * params["hue"].to(x.dtype)
    cos, sin = angle.cos(), angle.sin()
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rot = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                       torch.stack([zero, sin, cos], 1)], 1)                      # (B, 3, 3)
    mat = torch.linalg.inv(yiq) @ rot @ yiq                                        # (B, 3, 3)
    x = torch.einsum("bij,bjhw->bihw", mat, x).clamp(0, 1)
    x = torch.where(params["gray"].view(batch, 1, 1, 1), _gray(x).expand_as(x), x)
    return x * 2 - 1


def augment(
    images: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    out_size: int | None = None,
    **options: Any,
) -> torch.Tensor:
    """SimCLR augmentations for a batch, one parameter draw per sample, on the images' device.

    ``options`` go to :func:`sample_augment_params` (``scale``, ``ratio``, ``flip``, ``jitter``,
    ``jitter_p``, ``gray_p``). The same generator state gives the same output; gradients flow
    to ``images``.

    Example:
        >>> x = torch.rand(4, 3, 16, 16) * 2 - 1
        >>> augment(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 16, 16])
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    params = sample_augment_params(images.shape[0], device=images.device, generator=generator, **options)
    return apply_augment(images, params, out_size=out_size)


# ----------------------------------------------------------------------------------------------
# Estimator and objective
# ----------------------------------------------------------------------------------------------


class Estimator(nn.Module):
    """A small convolutional encoder + projection head: ``(B, 3, H, W) -> (B, out_dim)``.

    Three stride-2 convolutions (``width``, ``2 width``, ``4 width`` channels) with GroupNorm and
    ReLU, global average pooling, then a two-layer projection with batch norm (the reference uses a ResNet-18;
    any ``nn.Module`` with the same signature can replace this one). :meth:`features` gives the
    pooled backbone features (what a probe reads).
    """

    def __init__(self, width: int = 32, out_dim: int = 64) -> None:
        super().__init__()
        width = _check_int("width", width, 1)
        out_dim = _check_int("out_dim", out_dim, 1)
        layers: list[nn.Module] = []
        chans = [3, width, 2 * width, 4 * width]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(min(8, cout), cout), nn.ReLU()]
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # Batch norm in the projection (as SimCLR): centres the embeddings over the batch, so
        # InfoNCE does not start from near-identical directions (loss stuck at log B).
        self.head = nn.Sequential(nn.Linear(4 * width, 4 * width), nn.BatchNorm1d(4 * width), nn.ReLU(),
                                  nn.Linear(4 * width, out_dim))
        self.feature_dim = 4 * width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, 4 width)``."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def pair_info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    *,
    temperature: float = 0.1,
    nda_keys: torch.Tensor | None = None,
    nda_weight: float | None = None,
) -> torch.Tensor:
    """Symmetric in-batch InfoNCE of pairs: the mean of anchor->positive and positive->anchor.

    Built on :func:`nda_plugins.contrastive.nda_info_nce` (cosine similarity / ``temperature``);
    ``nda_keys`` ``(B, M, D)`` (embeddings of negatives made from each anchor) are extra
    negatives of both directions.

    Args:
        anchor, positive: ``(B, D)`` embeddings.
        temperature: InfoNCE temperature (COP-Gen: 0.1).
        nda_keys: optional ``(B, M, D)`` NDA keys.
        nda_weight: optional down-weighting of the NDA keys (see ``nda_info_nce``).

    Returns:
        A scalar. ``log(B)`` minus it lower-bounds the mutual information of the pair.
    """
    a = nda_info_nce(anchor, positive, None, nda_keys, temperature=temperature, nda_weight=nda_weight)
    b = nda_info_nce(positive, anchor, None, nda_keys, temperature=temperature, nda_weight=nda_weight)
    return 0.5 * (a + b)


class COPGen(nn.Module):
    """A frozen generator, a :class:`Navigator` and an :class:`Estimator`, with the COP-Gen losses.

    Args:
        generator: any module ``z (B, latent_dim) -> images (B, 3, H, W)`` in ``[-1, 1]``. It is
            frozen (``requires_grad_(False)``, ``eval()``) here.
        latent_dim: the generator's latent size (default: its ``z_dim`` / ``latent_dim``).
        estimator: the MI estimator (default :class:`Estimator`).
        temperature: InfoNCE temperature (0.1).
        radius: allowed RMS navigator step (semantic-consistency constraint).
        consistency_weight: weight of :func:`consistency_penalty` in the navigator's loss.
        augment: apply :func:`augment` to both views before the estimator (SimCLR aug, default).
        init_scale: :class:`Navigator`'s initial step scale.
    """

    def __init__(
        self,
        generator: nn.Module,
        latent_dim: int | None = None,
        *,
        estimator: nn.Module | None = None,
        temperature: float = 0.1,
        radius: float = 0.5,
        consistency_weight: float = 10.0,
        augment: bool = True,
        init_scale: float = 1e-2,
    ) -> None:
        super().__init__()
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be an nn.Module mapping z to images, got {type(generator).__name__}")
        if latent_dim is None:
            latent_dim = getattr(generator, "z_dim", None) or getattr(generator, "latent_dim", None)
            if latent_dim is None:
                raise ValueError("latent_dim is required: the generator has no z_dim or latent_dim attribute")
        self.latent_dim = _check_int("latent_dim", latent_dim, 1)
        self.generator = generator.eval().requires_grad_(False)
        self.navigator = Navigator(self.latent_dim, init_scale=init_scale)
        self.estimator = Estimator() if estimator is None else estimator
        if not isinstance(self.estimator, nn.Module):
            raise TypeError(f"estimator must be an nn.Module or None, got {type(estimator).__name__}")
        self.temperature = _check_positive("temperature", temperature)
        self.radius = _check_positive("radius", radius, allow_zero=True)
        self.consistency_weight = _check_positive("consistency_weight", consistency_weight, allow_zero=True)
        if not isinstance(augment, bool):
            raise TypeError(f"augment must be a bool, got {type(augment).__name__}")
        self.augment = augment

    def train(self, mode: bool = True) -> "COPGen":
        super().train(mode)
        self.generator.eval()  # frozen: batch-norm statistics never move
        return self

    def _views(self, z: torch.Tensor, generator: torch.Generator | None):
        """Anchors ``G(z)`` (no grad), positives ``G(z + T(z))`` and the (augmented) views
        ``(2B, 3, H, W)``: anchors first."""
        z = _check_latents(z, self.latent_dim)
        with torch.no_grad():
            anchor = self.generator(z)
        step = self.navigator.step(z)
        z_new = z + step
        positive = self.generator(z_new)
        views = torch.cat([anchor, positive])
        if self.augment:
            views = augment(views, generator=generator)
        return anchor, positive, z_new, step, views

    def losses(self, z: torch.Tensor, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One forward pass: anchors ``G(z)`` (no grad), positives ``G(z')``, augmented views,
        estimator features and the InfoNCE loss (differentiable in the navigator and estimator).

        Returns:
            ``anchor``, ``positive`` ``(B, 3, H, W)``; ``z_new``, ``step`` ``(B, d)``;
            ``features_anchor``, ``features_positive`` ``(B, D)``; ``info_nce`` and
            ``consistency`` scalars.
        """
        anchor, positive, z_new, step, views = self._views(z, generator)
        feats = self.estimator(views)
        fa, fp = feats.chunk(2)
        return {
            "anchor": anchor, "positive": positive, "z_new": z_new, "step": step,
            "features_anchor": fa, "features_positive": fp,
            "info_nce": pair_info_nce(fa, fp, temperature=self.temperature),
            "consistency": consistency_penalty(step, self.radius),
        }

    def minimax_step(
        self,
        z: torch.Tensor,
        estimator_update: Callable[[torch.Tensor], Any],
        navigator_update: Callable[[torch.Tensor], Any],
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One adversarial iteration on the same augmented pairs.

        First the estimator minimises InfoNCE on detached views, then the navigator minimises
        ``-InfoNCE + consistency_weight * penalty`` with the estimator's parameters frozen (so
        no gradient of the navigator's loss lands on the estimator).

        Args:
            z: ``(B, d)`` latents.
            estimator_update: ``fn(loss)`` that backpropagates and steps the estimator's
                optimizer (e.g. an mmengine ``OptimWrapper.update_params``).
            navigator_update: the same for the navigator's optimizer.
            generator: randomness of the augmentations.

        Returns:
            Detached scalars: ``loss_mi``, ``loss_navigator``, ``consistency`` and :func:`step_stats`.
        """
        z = _check_latents(z, self.latent_dim)
        _, _, z_new, step, views = self._views(z, generator)

        fa, fp = self.estimator(views.detach()).chunk(2)
        loss_mi = pair_info_nce(fa, fp, temperature=self.temperature)
        estimator_update(loss_mi)

        params = [p for p in self.estimator.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            fa, fp = self.estimator(views).chunk(2)
            consistency = consistency_penalty(step, self.radius)
            loss_nav = -pair_info_nce(fa, fp, temperature=self.temperature) + self.consistency_weight * consistency
            navigator_update(loss_nav)
        finally:
            for p in params:
                p.requires_grad_(True)
        out = {"loss_mi": loss_mi.detach(), "loss_navigator": loss_nav.detach(), "consistency": consistency.detach()}
        out.update(step_stats(z, z_new.detach()))
        return out


# ----------------------------------------------------------------------------------------------
# Generators: user-given or a small default one
# ----------------------------------------------------------------------------------------------


def load_generator(
    spec: nn.Module | str | None = None,
    *,
    checkpoint: str | Path | None = None,
    factory_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Resolve a generator ``z -> images``.

    Args:
        spec: an ``nn.Module``; a factory ``"package.module:callable"`` (called with
            ``factory_kwargs``, must return an ``nn.Module``); a path to a ``torch.save``-d module
            (or a dict holding one under ``"generator"``); or ``None`` for
            :func:`default_generator` (``factory_kwargs`` go to it).
        checkpoint: a state dict (or a dict with ``"state_dict"`` / ``"generator"``) loaded into
            the module built from ``spec``.

    Raises:
        TypeError, ValueError: ``spec`` or ``checkpoint`` cannot give a module.
    """
    kwargs = dict(factory_kwargs or {})
    if spec is None:
        module = default_generator(**kwargs)
    elif isinstance(spec, nn.Module):
        module = spec
    elif isinstance(spec, (str, Path)):
        path = Path(spec)
        if isinstance(spec, str) and ":" in spec and not path.exists():
            module = load_factory(spec, what="generator factory")(**kwargs)
        elif path.is_file():
            obj = torch.load(path, map_location="cpu", weights_only=False)
            if isinstance(obj, dict) and isinstance(obj.get("generator"), nn.Module):
                obj = obj["generator"]
            module = obj
        else:
            raise ValueError(f"generator must be a module, 'package.module:callable' or an existing file, got {spec!r}")
    else:
        raise TypeError(f"generator must be an nn.Module, a factory string, a path or None, got {type(spec).__name__}")
    if not isinstance(module, nn.Module):
        raise TypeError(f"generator {spec!r} gave a {type(module).__name__}, expected an nn.Module")
    if checkpoint is not None:
        state = torch.load(Path(checkpoint), map_location="cpu", weights_only=False)
        if isinstance(state, dict):
            for key in ("state_dict", "generator"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if isinstance(state, nn.Module):
            state = state.state_dict()
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint {str(checkpoint)!r} holds no state dict")
        module.load_state_dict(state)
    return module


CLASSES = ("disc", "square", "ring")


def shape_dataset(n_per_class: int, *, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural labelled images: ``n_per_class`` discs, squares and rings (in ``[-1, 1]``).

    Returns:
        ``(images (3n, 3, size, size), labels (3n,))`` with labels indexing :data:`CLASSES`.
    """
    from .demo.images import shapes

    gen = torch.Generator().manual_seed(seed)
    images = torch.cat([shapes(n_per_class, kind, size=size, generator=gen) for kind in CLASSES])
    labels = torch.arange(len(CLASSES)).repeat_interleave(n_per_class)
    return images, labels


def default_generator(steps: int = 300, *, size: int = 32, z_dim: int = 32, seed: int = 0, pool: int = 512) -> nn.Module:
    """A small DCGAN generator trained on the fly (offline) on procedural discs, squares and rings.

    The demo GAN of :mod:`nda_plugins.demo.gan` (``z_dim``, width 16), ``steps`` alternating
    updates, batch 32. Deterministic for a given ``seed``. Returns it in eval mode.
    """
    from .demo import gan
    from .transforms import build

    steps = _check_int("steps", steps, 0)
    real, _ = shape_dataset(pool // 3 + 1, size=size, seed=seed)
    config = gan.TrainConfig(steps=steps, batch_size=32, z_dim=z_dim, width=16, size=size)
    G, _ = gan.train_gan(real, build("jigsaw"), config, seed=seed)
    return G.eval()


# ----------------------------------------------------------------------------------------------
# Offline pairs
# ----------------------------------------------------------------------------------------------


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


@torch.no_grad()
def generate_pairs(
    generator: nn.Module,
    navigator: Navigator,
    out_dir: str | Path,
    num: int,
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> Path:
    """Write ``num`` (anchor, positive) pairs ``(G(z), G(z + T(z)))`` to a dataset folder.

    Layout: ``anchor/000000.png``, ``positive/000000.png`` (same index = one pair),
    ``latents.pt`` (``{"z": (N, d), "z_new": (N, d)}``) and ``meta.json``. Latents come from a
    ``torch.Generator`` seeded with ``seed``.

    Raises:
        ValueError: ``out_dir`` exists and is not empty (nothing is overwritten), bad ``num``.
    """
    from ._png import write_png

    num = _check_int("num", num, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"out_dir {str(out)!r} exists and is not an empty folder; pick a new one")
    (out / "anchor").mkdir(parents=True, exist_ok=True)
    (out / "positive").mkdir(exist_ok=True)
    device = torch.device(device)
    generator = generator.to(device).eval()
    navigator = navigator.to(device).eval()
    rng = torch.Generator().manual_seed(seed)
    zs, z_news, size = [], [], 0
    for start in range(0, num, batch_size):
        z = torch.randn(min(batch_size, num - start), navigator.latent_dim, generator=rng).to(device)
        z_new = navigator(z)
        for name, imgs in (("anchor", generator(z)), ("positive", generator(z_new))):
            size = imgs.shape[-1]
            for i, pixels in enumerate(_to_uint8(imgs)):
                write_png(out / name / f"{start + i:06d}.png", pixels)
        zs.append(z.cpu())
        z_news.append(z_new.cpu())
    torch.save({"z": torch.cat(zs), "z_new": torch.cat(z_news)}, out / "latents.pt")
    (out / "meta.json").write_text(json.dumps({"num": num, "seed": seed, "latent_dim": navigator.latent_dim, "size": size}, indent=2))
    return out


def read_pairs(root: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a folder written by :func:`generate_pairs`: ``(anchors, positives)``, each
    ``(N, 3, H, W)`` float32 in ``[-1, 1]``.

    Raises:
        ValueError: not such a folder, or the two sides do not match.
    """
    from ._png import read_png

    root = Path(root)
    if not (root / "anchor").is_dir() or not (root / "positive").is_dir():
        raise ValueError(f"data_root {str(root)!r} must hold anchor/ and positive/ (see generate_pairs)")
    names = sorted(p.name for p in (root / "anchor").glob("*.png"))
    if not names or names != sorted(p.name for p in (root / "positive").glob("*.png")):
        raise ValueError(f"data_root {str(root)!r}: anchor/ and positive/ must hold the same non-empty set of PNGs")

    def load(side):
        imgs = torch.stack([read_png(root / side / n)[..., :3] for n in names])
        return imgs.permute(0, 3, 1, 2).float() / 127.5 - 1

    return load("anchor"), load("positive")
