"""NDA for ajbrock/BigGAN-PyTorch (pinned at ``9845943``).

The patch series ``nda_plugins/patches/biggan`` adds the call sites; everything they call
lives here:

* :mod:`.options` -- the ``--nda*`` flags (``add_arguments``, called at the end of upstream's
  ``utils.prepare_parser``) and their map to :class:`nda_plugins.NDASession` arguments.
* :mod:`.training` -- ``configure`` / ``prepare_state`` / ``wrap`` / ``labels`` in ``train.py``
  and ``d_losses`` / ``step`` in ``train_fns.GAN_training_function``. :class:`.training.NDAGD`
  wraps upstream's ``G_D`` (or its ``DataParallel``) and adds negatives to the D step only.

Nothing here imports upstream code, so the logic is tested without a checkout.
"""

from __future__ import annotations
