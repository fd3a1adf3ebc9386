"""NDA and ANDA for NVlabs/stylegan2-ada-pytorch (pinned at ``d72cc7d``).

The patch series ``nda_plugins/patches/stylegan2-ada`` adds the call sites; everything they
call lives here:

* :mod:`.options` -- ``configure(args, nda=..., ...)``, called by the patched ``train.py``: it
  validates the ``--nda*`` / ``--anda*`` flags and selects :class:`~.loss.NDAStyleGAN2Loss`
  through ``args.loss_kwargs.class_name`` (the name ``train.py`` already uses to pick a loss).
* :mod:`.loss` -- ``NDAStyleGAN2Loss``, upstream's ``StyleGAN2Loss`` with the discriminator's
  fake side replaced by ``(1 - w) * fakes + w * negatives`` (imports upstream's
  ``training.loss``, so it only imports inside an upstream checkout).
* :mod:`.mixin` -- the upstream-independent logic of that loss (tested without upstream).
* :mod:`.training` -- ``step`` / ``snapshot`` / ``resume``, called by the patched
  ``training/training_loop.py`` beside ADA's ``p`` adjustment, snapshot and resume.

Nothing here imports upstream code at import time except :mod:`.loss`.
"""

from __future__ import annotations

#: ``loss_kwargs.class_name`` selected by ``--nda``.
LOSS_CLASS = "nda_plugins.adapters.stylegan2_ada.loss.NDAStyleGAN2Loss"
