"""The plugin manager: built-in plugins, entry-point plugins, and registration checks."""

from __future__ import annotations

import os
import threading

import pluggy

from . import hookspecs

#: Entry-point group that third-party plugins declare in their ``pyproject.toml``.
ENTRY_POINT_GROUP = "nda_plugins"
#: Set to a non-empty value other than ``0`` to skip entry-point plugins (as pytest's
#: ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``).
DISABLE_AUTOLOAD_ENV = "NDA_PLUGINS_DISABLE_AUTOLOAD"

_lock = threading.Lock()
_default: pluggy.PluginManager | None = None


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
    for hook_name in dir(plugin):
        if hook_name.startswith("nda_") and pm.parse_hookimpl_opts(plugin, hook_name) is not None:
            if not hasattr(hookspecs, hook_name):
                pm.unregister(plugin)
                known = sorted(n for n in dir(hookspecs) if n.startswith("nda_"))
                raise PluginRegistrationError(
                    f"plugin {registered!r}: hook {hook_name!r} is not an nda_plugins hook; "
                    f"expected one of {known}"
                )
    return registered


def new_plugin_manager(*, autoload: bool | None = None, builtins: bool = True) -> pluggy.PluginManager:
    """Make a fresh plugin manager with the built-in plugins and, unless disabled, entry points.

    Args:
        autoload: load plugins from the ``nda_plugins`` entry-point group. ``None`` (default)
            means "yes unless ``NDA_PLUGINS_DISABLE_AUTOLOAD`` is set".
        builtins: register the built-in plugins of :mod:`nda_plugins.plugins`.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if builtins:
        from .plugins import BUILTIN_PLUGINS

        for name, plugin in BUILTIN_PLUGINS:
            register(pm, plugin, name=name)
    if autoload is None:
        autoload = not _autoload_disabled()
    if autoload:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must say who it is
            raise PluginRegistrationError(
                f"plugin {ep.name!r} (entry point {ep.value!r} in group {ENTRY_POINT_GROUP!r}) "
                f"failed to import: {exc}"
            ) from exc
        register(pm, plugin, name=ep.name)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = new_plugin_manager()
        return _default


def set_plugin_manager(pm: pluggy.PluginManager | None) -> None:
    """Replace (or with ``None`` reset) the process-wide plugin manager; used by tests."""
    global _default
    with _lock:
        _default = pm
