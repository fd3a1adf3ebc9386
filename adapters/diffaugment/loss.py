"""``NDAStyleGAN2Loss`` for DiffAugment-StyleGAN2: the fork's ``StyleGAN2Loss`` with negatives.

Imports the fork's ``training.loss`` (importable only inside its checkout). The fork's ``run_D``
applies ``DiffAugment(img, policy)`` to every input, negatives included.
"""

from __future__ import annotations

from torch_utils import training_stats  # upstream
from training.loss import StyleGAN2Loss  # upstream (the fork's, with diffaugment=...)

from ..stylegan2_ada.mixin import NDALossMixin


class NDAStyleGAN2Loss(NDALossMixin, StyleGAN2Loss):
    """``StyleGAN2Loss(..., diffaugment=..., nda_kwargs={...})``."""

    def _report(self, name, value):
        training_stats.report(name, value)
