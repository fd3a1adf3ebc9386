"""``--model pix2pix_nda``: upstream's ``Pix2PixModel`` with :class:`.mixin.Pix2PixNDAMixin`.

The patched checkout's ``models/pix2pix_nda_model.py`` binds ``Pix2PixNDAModel = model_class()``;
upstream's ``models.find_model_using_name("pix2pix_nda")`` then finds it by name.
"""

from __future__ import annotations

import argparse
import importlib

from .mixin import Pix2PixNDAMixin
from .options import add_options


def make_model_class(base: type) -> type:
    """``class Pix2PixNDAModel(Pix2PixNDAMixin, base)`` with the NDA flags in its options.

    Args:
        base: upstream's ``Pix2PixModel`` (or a class with the same interface).
    """
    if not isinstance(base, type):
        raise TypeError(f"base must be a class (upstream's Pix2PixModel), got {type(base).__name__}")

    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool = True):
        parser = base.modify_commandline_options(parser, is_train)
        return add_options(parser, is_train)

    namespace = {
        "__doc__": f"{base.__name__} with negative data augmentation (nda-plugins; see --nda).",
        "__module__": base.__module__.rsplit(".", 1)[0] + ".pix2pix_nda_model",
        "modify_commandline_options": staticmethod(modify_commandline_options),
    }
    return type("Pix2PixNDAModel", (Pix2PixNDAMixin, base), namespace)


def model_class(module: str = "models.pix2pix_model") -> type:
    """The NDA model class over upstream's ``Pix2PixModel`` (run inside an upstream checkout)."""
    return make_model_class(importlib.import_module(module).Pix2PixModel)
