"""NDA for junyanz/pytorch-CycleGAN-and-pix2pix (pinned at ``2a7afba``).

The patch series ``nda_plugins/patches/pix2pix`` adds one new upstream file,
``models/pix2pix_nda_model.py``, so that ``--model pix2pix_nda`` selects the NDA model the upstream
way (``models.find_model_using_name``). Everything that file uses lives here:

* :mod:`.options` -- the ``--nda*`` flags (:func:`~.options.add_options`, called from the model's
  ``modify_commandline_options``) and their mapping to :class:`nda_plugins.NDASession`.
* :mod:`.mixin` -- :class:`~.mixin.Pix2PixNDAMixin`: the discriminator step with the conditional
  negative pair ``(real_A, T(real_B))`` as extra fakes with weight ``w`` (``weighted`` and
  ``replace``), ``D_NDA`` in ``loss_names``, and NDA state saved beside the networks
  (``<epoch>_nda_state.pth``) and restored with ``--continue_train``. Upstream-independent.
* :mod:`.model` -- :func:`~.model.model_class`: upstream's ``Pix2PixModel`` with the mixin and
  the flags (imports upstream's ``models.pix2pix_model``, so it only works inside a checkout).
"""

from __future__ import annotations

#: the ``--model`` name the patch makes available
MODEL_NAME = "pix2pix_nda"
