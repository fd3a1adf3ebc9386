"""The ``--nda*`` / ``--anda*`` flags of the patched InsGen ``train.py``.

Same flags and validation as :mod:`nda_plugins.adapters.stylegan2_ada.options`; the selected
loss subclasses whichever loss InsGen chose (``StyleGAN2LossCL``, or ``StyleGAN2Loss`` with
``--no_insgen=1``).
"""

from __future__ import annotations

from typing import Any, MutableMapping

from ..stylegan2_ada import options as _sg2
from . import LOSS_CLASSES

FLAGS = _sg2.FLAGS
NDAOptionError = _sg2.NDAOptionError


def configure(args: MutableMapping[str, Any], **flags: Any) -> str:
    """Validate the flags and select the NDA subclass of the loss InsGen chose.

    Raises:
        NDAOptionError: a bad flag, or a loss this adapter has no subclass for.
    """
    current = args["loss_kwargs"].get("class_name")
    if flags.get("nda") is not None and current not in LOSS_CLASSES and current not in LOSS_CLASSES.values():
        raise NDAOptionError(f"--nda supports the losses {sorted(LOSS_CLASSES)}, got {current!r}", param_hint="--nda")
    upstream = next((up for up, ours in LOSS_CLASSES.items() if current in (up, ours)), current)
    return _sg2.configure(args, loss_class=LOSS_CLASSES.get(upstream, ""), upstream_loss=upstream, **flags)
