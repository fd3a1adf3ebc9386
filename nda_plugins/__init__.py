"""nda-plugins: negative data augmentation for GAN and self-supervised training.

The public entry points are re-exported here. Importing the package stays light: it imports
pluggy but not torch; :class:`NDASession` (which needs torch) is loaded on first access.

Example:
    >>> import nda_plugins
    >>> session = nda_plugins.NDASession(transform="jigsaw", weight=0.75)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._manager import PluginRegistrationError, get_plugin_manager, new_plugin_manager
from .hookspecs import hookimpl, hookspec

if TYPE_CHECKING:  # pragma: no cover
    from ._session import NDASession

__version__ = "0.1.0"

__all__ = [
    "NDASession",
    "PluginRegistrationError",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "new_plugin_manager",
]


def __getattr__(name: str):
    # PEP 562: NDASession pulls in torch, so it is imported only when asked for.
    if name == "NDASession":
        from ._session import NDASession

        return NDASession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
