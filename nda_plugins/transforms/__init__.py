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

import inspect
from typing import Any, Callable

from ._base import NegativeTransform, check_images
from ._builtin import BUILTINS, CutMix, Cutout, FromSource, Jigsaw, Mixup, Noise, Stitch, example_options

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

Factory = Callable[..., Callable]


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into a name and typed options.

    Values become ``int``, ``float``, ``bool`` (``true``/``false``), ``None`` (``none``) or stay
    strings.

    Raises:
        ValueError: empty name, an item without ``=``, or a repeated key.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a string like 'jigsaw:grid=2', got {type(spec).__name__}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"spec must start with a name, like 'jigsaw:grid=2', got {spec!r}")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"spec {spec!r}: option {item!r} must look like key=value")
        if key in options:
            raise ValueError(f"spec {spec!r}: option {key!r} is given twice")
        options[key] = _parse_value(value.strip())
    return name, options


class TransformRegistry:
    """Name -> factory table that plugins fill through ``nda_register_transforms``."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}
        self._owners: dict[str, str] = {}
        self._current_plugin = "<direct>"

    def add(self, name: str, factory: Factory, *, overwrite: bool = False) -> None:
        """Register ``factory(**options) -> transform`` under ``name``.

        Raises:
            ValueError: ``name`` is taken (by the plugin named in the message) and ``overwrite``
                is False, or is not an identifier-like string.
            TypeError: ``factory`` is not callable.
        """
        if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"plugin {self._current_plugin!r}: transform name must be a non-empty identifier "
                f"(letters, digits, '_' or '-'), got {name!r}"
            )
        if not callable(factory):
            raise TypeError(
                f"plugin {self._current_plugin!r}: factory for transform {name!r} must be callable, "
                f"got {type(factory).__name__}"
            )
        if name in self._factories and not overwrite:
            raise ValueError(
                f"plugin {self._current_plugin!r}: transform {name!r} is already registered by "
                f"plugin {self._owners[name]!r}; pass overwrite=True to replace it"
            )
        self._factories[name] = factory
        self._owners[name] = self._current_plugin

    def names(self) -> list[str]:
        return sorted(self._factories)

    def owner(self, name: str) -> str:
        return self._owners[name]

    def factory(self, name: str) -> Factory:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(f"unknown transform {name!r}; available: {', '.join(self.names())}") from None


_cache: dict[int, tuple[tuple, TransformRegistry]] = {}


def registry(plugin_manager=None) -> TransformRegistry:
    """The transform registry of ``plugin_manager`` (default: the process-wide one).

    Built by calling every ``nda_register_transforms`` implementation (pluggy's call order:
    later-registered and ``tryfirst`` plugins first, so a built-in is added before anyone could
    overwrite it), and rebuilt when the set of plugins changes.
    """
    from .._manager import get_plugin_manager

    pm = plugin_manager if plugin_manager is not None else get_plugin_manager()
    impls = pm.hook.nda_register_transforms.get_hookimpls()  # in call order: last is called first
    key = tuple((impl.plugin_name, id(impl.function)) for impl in impls)
    cached = _cache.get(id(pm))
    if cached is not None and cached[0] == key:
        return cached[1]
    reg = TransformRegistry()
    for impl in impls:  # pluggy calls hooks in reverse order; registration order is what we want
        reg._current_plugin = impl.plugin_name
        impl.function(registry=reg)
    reg._current_plugin = "<direct>"
    _cache[id(pm)] = (key, reg)
    return reg


def available(plugin_manager=None) -> list[str]:
    """Names of every registered transform, sorted."""
    return registry(plugin_manager).names()


def build(name_or_spec: str | Callable, *, plugin_manager=None, **options) -> Callable:
    """Make a transform from a name or spec string, with options.

    Args:
        name_or_spec: ``"jigsaw"``, ``"jigsaw:grid=3"``, or an already-built transform (any
            callable), which is returned unchanged if no options are given.
        plugin_manager: where to look names up (default: the process-wide manager).
        **options: the transform's options; they may not repeat a key set in the spec.

    Raises:
        ValueError: unknown name, or an option given twice.
        TypeError: an option the transform does not take (the message lists the ones it does).
    """
    if callable(name_or_spec) and not isinstance(name_or_spec, str):
        if options:
            raise TypeError("options can only be given with a transform name, not with a built transform")
        return name_or_spec
    name, spec_options = parse_spec(name_or_spec)
    clash = set(spec_options) & set(options)
    if clash:
        raise ValueError(f"option(s) {sorted(clash)} given both in spec {name_or_spec!r} and as arguments")
    options = {**spec_options, **options}
    factory = registry(plugin_manager).factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        accepted = [p.name for p in signature.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise TypeError(
                f"transform {name!r} does not take option(s) {unknown}; it takes {accepted or 'no options'}"
            )
    return factory(**options)
