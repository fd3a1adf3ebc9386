"""Registers the built-in negative transforms (jigsaw, stitch, cutout, cutmix, mixup, noise, source)."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..transforms._builtin import BUILTINS


@hookimpl
def nda_register_transforms(registry):
    for name, cls in BUILTINS.items():
        registry.add(name, cls)
