"""InsGen losses with negatives (see :mod:`.mixin`); import only inside an InsGen checkout."""

from __future__ import annotations

from torch_utils import training_stats  # upstream
from training.contrastive_loss import StyleGAN2LossCL  # upstream
from training.loss import StyleGAN2Loss  # upstream

from .mixin import NDAInterceptMixin


class NDAStyleGAN2LossCL(NDAInterceptMixin, StyleGAN2LossCL):
    """InsGen's ``StyleGAN2LossCL(..., nda_kwargs={...})``."""

    def _report(self, name, value):
        training_stats.report(name, value)


class NDAStyleGAN2Loss(NDAInterceptMixin, StyleGAN2Loss):
    """InsGen's plain ``StyleGAN2Loss`` (``--no_insgen=1``) with negatives."""

    def _report(self, name, value):
        training_stats.report(name, value)
