"""Negative transforms: turn real samples into samples outside the data distribution.

Public contract::

    available() -> list[str]
    build(name_or_spec, **options) -> t          # t(x, *, generator=None, partner=None) -> Tensor
    parse_spec("jigsaw:grid=3") -> ("jigsaw", {"grid": 3})

``t(x)`` returns a new tensor with the shape, dtype, device and memory format of ``x`` and never
modifies ``x``. Parameters are drawn per sample from ``generator`` (same state, same output);
no negative equals its source. Images are ``(B, C, H, W)``, video ``(B, C, T, H, W)`` with one
parameter draw per clip applied to every frame.

Transforms are registered through the ``nda_register_transforms`` hook, so a third-party plugin
adds names exactly as the built-ins do.

Example:
    >>> import torch
    >>> from nda_plugins import transforms
    >>> t = transforms.build("jigsaw:grid=2")
    >>> x = torch.rand(8, 3, 32, 32)
    >>> negatives = t(x, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from typing import Any, Callable

from .._registry import NamedRegistry, build_from, parse_spec, registry_from_hook
from ._base import NegativeTransform, check_images
from ._builtin import CutMix, Cutout, FromSource, Jigsaw, Mixup, Noise, Stitch, example_options

__all__ = [
    "CutMix",
    "Cutout",
    "FromSource",
    "Jigsaw",
    "Mixup",
    "NegativeTransform",
    "Noise",
    "Stitch",
    "TransformRegistry",
    "available",
    "build",
    "check_images",
    "example_options",
    "parse_spec",
    "registry",
]


class TransformRegistry(NamedRegistry):
    """Name -> factory table that plugins fill through ``nda_register_transforms``.

    ``registry.add(name, factory)``: ``factory(**options)`` returns a callable
    ``t(x, *, generator=None, partner=None) -> Tensor``.
    """

    kind = "transform"


def registry(plugin_manager=None) -> TransformRegistry:
    """The transform registry of ``plugin_manager`` (default: the process-wide one)."""
    return registry_from_hook(TransformRegistry, "nda_register_transforms", plugin_manager)


def available(plugin_manager=None) -> list[str]:
    """Names of every registered transform, sorted."""
    return registry(plugin_manager).names()


def build(name_or_spec: str | Callable, *, plugin_manager=None, **options: Any) -> Callable:
    """Make a transform from a name or spec string, with options.

    Args:
        name_or_spec: ``"jigsaw"``, ``"jigsaw:grid=3"``, or an already-built transform (any
            callable), which is returned unchanged if no options are given.
        plugin_manager: where to look names up (default: the process-wide manager).
        **options: the transform's options, merged with the spec's (a key in both must have
            the same value).

    Raises:
        ValueError: unknown name, malformed spec, or a key given twice with different values.
        TypeError: an option the transform does not take (the message lists the ones it does).
    """
    return build_from(registry, name_or_spec, plugin_manager, options)
