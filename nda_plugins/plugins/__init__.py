"""Built-in plugins, registered through the same mechanism as third-party ones.

``BUILTIN_PLUGINS`` is a list of ``(name, module)`` pairs that
:func:`nda_plugins.new_plugin_manager` registers first.
"""

from __future__ import annotations

from . import builtin_policy, builtin_schedules, builtin_transforms

BUILTIN_PLUGINS = [
    ("nda_plugins.builtin_transforms", builtin_transforms),
    ("nda_plugins.builtin_schedules", builtin_schedules),
    ("nda_plugins.builtin_policy", builtin_policy),
]
