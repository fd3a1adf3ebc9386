"""``NDAStyleGAN2Loss``: upstream's ``StyleGAN2Loss`` with negatives (see :mod:`.mixin`).

Imports upstream's ``training.loss``: importable only from inside a stylegan2-ada-pytorch
checkout (``train.py`` runs there). Selected by name through
``loss_kwargs.class_name = "nda_plugins.adapters.stylegan2_ada.loss.NDAStyleGAN2Loss"``.
"""

from __future__ import annotations

from torch_utils import training_stats  # upstream
from training.loss import StyleGAN2Loss  # upstream

from .mixin import NDALossMixin


class NDAStyleGAN2Loss(NDALossMixin, StyleGAN2Loss):
    """``StyleGAN2Loss(..., nda_kwargs={...})``; see :class:`.mixin.NDALossMixin`."""

    def _report(self, name, value):
        training_stats.report(name, value)
