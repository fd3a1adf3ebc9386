"""The ``--nda*`` / ``--anda*`` flags of the patched DiffAugment-StyleGAN2 ``train.py``.

Same flags and validation as :mod:`nda_plugins.adapters.stylegan2_ada.options`; only the
selected loss class differs.
"""

from __future__ import annotations

from typing import Any, MutableMapping

from ..stylegan2_ada import options as _sg2
from . import LOSS_CLASS

FLAGS = _sg2.FLAGS
NDAOptionError = _sg2.NDAOptionError
UPSTREAM_LOSS = _sg2.UPSTREAM_LOSS


def configure(args: MutableMapping[str, Any], **flags: Any) -> str:
    """:func:`nda_plugins.adapters.stylegan2_ada.options.configure` selecting this fork's loss."""
    return _sg2.configure(args, loss_class=LOSS_CLASS, **flags)
