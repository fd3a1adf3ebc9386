"""Registers the built-in weight schedules (constant, linear, cosine, warmup, curriculum).

A third-party plugin replaces one with ``registry.add(name, factory, overwrite=True)`` from its
own ``nda_register_schedules`` implementation.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..schedules import BUILTIN_SCHEDULES


@hookimpl
def nda_register_schedules(registry):
    for name, factory in BUILTIN_SCHEDULES.items():
        registry.add(name, factory)
