"""Import a callable named by a ``"package.module:callable"`` spec (factories on the command line)."""

from __future__ import annotations

import importlib
from typing import Callable


def load_factory(spec: str, *, what: str = "factory") -> Callable:
    """The callable named by ``"package.module:callable"`` (``callable`` may be dotted).

    Args:
        spec: the spec, e.g. ``"mypkg.models:make_discriminator"``.
        what: how error messages name the spec (e.g. ``"generator factory"``).

    Raises:
        ValueError: a malformed spec, a module that does not import, a missing attribute or an
            object that is not callable; the message names ``what`` and the spec.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"{what} must look like 'package.module:callable', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {spec!r}: cannot import {module_name!r} ({exc})") from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {spec!r} is not callable")
    return obj
