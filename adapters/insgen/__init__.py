"""NDA and ANDA for InsGen (genforce/insgen ``52bda7c``), StyleGAN2-ADA plus instance discrimination.

InsGen's ``StyleGAN2LossCL.accumulate_gradients`` takes extra arguments (contrastive phases,
``D_ema``, loss weights) and mixes its contrastive terms into the real pass, so rewriting its
discriminator step would mean copying it. Instead :class:`~.mixin.NDAInterceptMixin` lets
upstream's code run unchanged and intercepts its ``run_D`` calls during ``Dmain``/``Dboth``
(see :mod:`.mixin`). Selected by name like the StyleGAN2-ADA adapter; the training-loop call
sites are the same.
"""

from __future__ import annotations

#: upstream loss (``train.py``'s choice) -> our subclass of it
LOSS_CLASSES = {
    "training.contrastive_loss.StyleGAN2LossCL": "nda_plugins.adapters.insgen.loss.NDAStyleGAN2LossCL",
    "training.loss.StyleGAN2Loss": "nda_plugins.adapters.insgen.loss.NDAStyleGAN2Loss",  # --no_insgen=1
}
