"""Name -> factory registries filled through registration hooks (transforms, schedules).

One implementation serves every kind: spec strings (``"name:key=value,..."``), plugin-named
errors, option checking against the factory's signature, and a per-plugin-manager cache that is
rebuilt when the set of plugins changes.
"""

from __future__ import annotations

import inspect
import re
import weakref
from typing import Any, Callable

import pluggy

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


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
        TypeError: ``spec`` is not a string.
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


class NamedRegistry:
    """Name -> factory table that plugins fill through a registration hook.

    Subclasses set :attr:`kind` (used in messages: "transform", "schedule").
    """

    kind = "entry"

    def __init__(self) -> None:
        self._factories: dict[str, Callable[..., Any]] = {}
        self._owners: dict[str, str] = {}
        self._current_plugin = "<direct>"

    def add(self, name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> None:
        """Register ``factory(**options)`` under ``name``.

        Raises:
            ValueError: ``name`` is not letters, digits, ``_`` or ``-``, or is taken (by the
                plugin named in the message) and ``overwrite`` is False.
            TypeError: ``factory`` is not callable.
        """
        plugin = self._current_plugin
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(
                f"plugin {plugin!r}: {self.kind} name must be letters, digits, '_' or '-', got {name!r}"
            )
        if not callable(factory):
            raise TypeError(
                f"plugin {plugin!r}: factory for {self.kind} {name!r} must be callable, got {type(factory).__name__}"
            )
        if name in self._factories and not overwrite:
            raise ValueError(
                f"plugin {plugin!r}: {self.kind} {name!r} is already registered by plugin "
                f"{self._owners[name]!r}; pass overwrite=True to replace it"
            )
        self._factories[name] = factory
        self._owners[name] = plugin

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._factories)

    def owner(self, name: str) -> str:
        """Name of the plugin that registered ``name`` (the last writer)."""
        return self._owners[name]

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def factory(self, name: str) -> Callable[..., Any]:
        """The factory registered under ``name``.

        Raises:
            ValueError: unknown name (the message lists the known ones).
        """
        try:
            return self._factories[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None

    def build(self, name_or_spec: str, **options: Any) -> Callable:
        """Build from a name or spec string; ``options`` are merged with the spec's.

        A key given both in the spec and as a keyword is accepted only with the same value.

        Raises:
            ValueError: unknown name, malformed spec, or a key given twice with different values.
            TypeError: an option the factory does not take (the message lists the ones it does),
                or a factory that returns something not callable.
        """
        if not isinstance(name_or_spec, str):
            raise TypeError(
                f"name_or_spec must be a {self.kind} name or spec string, got {type(name_or_spec).__name__}"
            )
        name, spec_options = parse_spec(name_or_spec)
        for key, value in options.items():
            if key in spec_options and spec_options[key] != value:
                raise ValueError(
                    f"option {key!r} given twice with different values: {spec_options[key]!r} in the "
                    f"spec {name_or_spec!r} and {value!r} as an argument"
                )
        merged = {**spec_options, **options}
        factory = self.factory(name)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            signature = None
        if signature is not None and not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            accepted = [p.name for p in signature.parameters.values() if p.kind in named]
            unknown = sorted(set(merged) - set(accepted))
            if unknown:
                raise TypeError(
                    f"{self.kind} {name!r} does not take option(s) {unknown}; it takes {accepted or 'no options'}"
                )
            missing = [p.name for p in signature.parameters.values()
                       if p.kind in named and p.default is p.empty and p.name not in merged]
            if missing:
                example = getattr(factory, "example", None)
                raise TypeError(
                    f"{self.kind} {name!r} needs option(s) {missing}, got {sorted(merged) or 'none'}; write it "
                    f"as a spec like {example or name + ':' + ','.join(m + '=...' for m in missing)!r} "
                    f"(`nda list {self.kind}s` shows every {self.kind}'s options)"
                )
        built = factory(**merged)
        if not callable(built):
            raise TypeError(f"factory of {self.kind} {name!r} returned a non-callable {built!r}")
        return built


_caches: dict[str, "weakref.WeakKeyDictionary"] = {}


def registry_from_hook(cls: type[NamedRegistry], hook_name: str, plugin_manager: Any = None) -> NamedRegistry:
    """The registry of ``plugin_manager`` (default: the process-wide one) for one hook.

    Built by calling every implementation of ``hook_name`` in registration order (built-ins
    first, so a third-party plugin must ask for ``overwrite=True`` to replace one), with the
    plugin's name recorded for error messages; rebuilt when the set of implementations changes.
    """
    if plugin_manager is None:
        from ._manager import get_plugin_manager

        plugin_manager = get_plugin_manager()
    elif not isinstance(plugin_manager, pluggy.PluginManager):
        raise TypeError(
            f"plugin_manager must be a pluggy.PluginManager (see nda_plugins.new_plugin_manager) or None, "
            f"got {type(plugin_manager).__name__}"
        )
    impls = getattr(plugin_manager.hook, hook_name).get_hookimpls()  # pluggy calls the last first
    key = tuple((impl.plugin_name, id(impl.function)) for impl in impls)
    cache = _caches.setdefault(hook_name, weakref.WeakKeyDictionary())
    cached = cache.get(plugin_manager)
    if cached is not None and cached[0] == key:
        return cached[1]
    reg = cls()
    for impl in impls:
        reg._current_plugin = impl.plugin_name
        impl.function(registry=reg)
    reg._current_plugin = "<direct>"
    cache[plugin_manager] = (key, reg)
    return reg


def build_from(reg_getter: Callable[[Any], NamedRegistry], name_or_spec: Any, plugin_manager: Any, options: dict) -> Callable:
    """``reg.build(name_or_spec, **options)``, or an already-built callable passed through."""
    if callable(name_or_spec) and not isinstance(name_or_spec, str):
        if options:
            raise TypeError(f"options {sorted(options)} can only be given with a name, not with a built object")
        return name_or_spec
    return reg_getter(plugin_manager).build(name_or_spec, **options)
