"""The plugin manager: built-in plugins, entry-point plugins, and registration checks."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Callable

import pluggy

from . import hookspecs

#: Entry-point group that third-party plugins declare in their ``pyproject.toml``.
ENTRY_POINT_GROUP = "nda_plugins"
#: Set to a non-empty value other than ``0`` to skip entry-point plugins (as pytest's
#: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``).
DISABLE_AUTOLOAD_ENV = "NDA_PLUGINS_DISABLE_AUTOLOAD"

_lock = threading.Lock()
_default: pluggy.PluginManager | None = None
#: entry-point plugins that failed to import or register, per manager: ``[(name, reason)]``
_broken: "weakref.WeakKeyDictionary[pluggy.PluginManager, list[tuple[str, str]]]" = weakref.WeakKeyDictionary()
#: what the process-wide manager does with a broken entry-point plugin (``None``: raise)
_on_broken: Callable[[str, str], None] | None = None


class PluginRegistrationError(ValueError):
    """A plugin does not fit the hook specification (names the plugin, hook and argument)."""


def _autoload_disabled() -> bool:
    value = os.environ.get(DISABLE_AUTOLOAD_ENV, "")
    return value not in ("", "0")


def register(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` with ``pm`` and check it at once.

    Raises:
        PluginRegistrationError: a hook implementation names an unknown ``nda_*`` hook or an
            argument the spec does not have. The message names the plugin, hook and argument.
    """
    try:
        registered = pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:  # unknown argument for a known hook
        raise PluginRegistrationError(f"plugin {name or plugin!r}: {exc}") from exc
    if registered is None:
        return name or pm.get_name(plugin) or repr(plugin)
    known = sorted(n for n in dir(hookspecs) if n.startswith("nda_"))
    for attr in dir(plugin):
        opts = pm.parse_hookimpl_opts(plugin, attr)
        if opts is None:
            continue
        hook_name = opts.get("specname") or attr
        if not hook_name.startswith("nda_"):
            # pluggy would keep it as an unverified hook that nothing ever calls
            pm.unregister(plugin)
            raise PluginRegistrationError(
                f"plugin {registered!r}: hook implementation {attr!r} lacks the 'nda_' prefix, so it would "
                f"never be called; rename it to the hook it implements, one of {known}"
            )
        if not hasattr(hookspecs, hook_name):
            pm.unregister(plugin)
            raise PluginRegistrationError(
                f"plugin {registered!r}: hook {hook_name!r} is not an nda_plugins hook; "
                f"expected one of {known}"
            )
    return registered


def new_plugin_manager(
    *, autoload: bool | None = None, builtins: bool = True, on_broken: Callable[[str, str], None] | None = None
) -> pluggy.PluginManager:
    """Make a fresh plugin manager with the built-in plugins and, unless disabled, entry points.

    Args:
        autoload: load plugins from the ``nda_plugins`` entry-point group. ``None`` (default)
            means "yes unless ``NDA_PLUGINS_DISABLE_AUTOLOAD`` is set".
        builtins: register the built-in plugins of :mod:`nda_plugins.plugins`.
        on_broken: called as ``on_broken(name, reason)`` for an entry-point plugin that fails to
            import or register; that plugin is skipped and listed by :func:`broken_plugins`.
            ``None`` (default): raise :class:`PluginRegistrationError` instead.

    Raises:
        PluginRegistrationError: a broken entry-point plugin and no ``on_broken``.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if builtins:
        from .plugins import BUILTIN_PLUGINS

        for name, plugin in BUILTIN_PLUGINS:
            register(pm, plugin, name=name)
    if autoload is None:
        autoload = not _autoload_disabled()
    _broken[pm] = []
    if autoload:
        _load_entry_points(pm, on_broken)
    return pm


def broken_plugins(pm: pluggy.PluginManager | None = None) -> list[tuple[str, str]]:
    """Entry-point plugins that ``pm`` skipped because they failed: ``[(name, one-line reason)]``.

    Args:
        pm: a manager from :func:`new_plugin_manager`; default: the process-wide one.
    """
    return list(_broken.get(get_plugin_manager() if pm is None else pm, []))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


def _load_entry_points(pm: pluggy.PluginManager, on_broken: Callable[[str, str], None] | None = None) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must say who it is
            reason = f"entry point {ep.value!r} failed to import: {_one_line(exc)}"
            if on_broken is None:
                raise PluginRegistrationError(
                    f"plugin {ep.name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r}) "
                    f"failed to import: {exc}"
                ) from exc
        else:
            try:
                register(pm, plugin, name=ep.name)
                continue
            except (PluginRegistrationError, ValueError) as exc:
                if on_broken is None:
                    raise
                reason = f"failed to register: {str(exc).split(': ', 1)[-1]}"
        _broken.setdefault(pm, []).append((ep.name, reason))
        on_broken(ep.name, reason)


def set_broken_plugin_handler(handler: Callable[[str, str], None] | None) -> None:
    """How the process-wide manager treats broken entry-point plugins (``None``: raise).

    The ``nda`` command line sets a handler that prints one line per broken plugin and goes on.
    """
    global _on_broken
    _on_broken = handler


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = new_plugin_manager(on_broken=_on_broken)
        return _default


def set_plugin_manager(pm: pluggy.PluginManager | None) -> None:
    """Replace (or with ``None`` reset) the process-wide plugin manager; used by tests."""
    global _default
    with _lock:
        _default = pm
