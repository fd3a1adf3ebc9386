"""NDA and ANDA for DiffAugment-StyleGAN2 (mit-han-lab/data-efficient-gans ``0b63395``,
folder ``DiffAugment-stylegan2-pytorch/``).

The fork keeps StyleGAN2-ADA's training loop and loss interface and adds a ``diffaugment``
policy applied in ``run_D``, so this adapter reuses :mod:`nda_plugins.adapters.stylegan2_ada`:
negatives go through the fork's ``run_D`` and get the same DiffAugment as fakes. Only the loss
class (which must subclass the fork's own ``StyleGAN2Loss``) and the name it is selected by differ.
"""

from __future__ import annotations

#: ``loss_kwargs.class_name`` selected by ``--nda``.
LOSS_CLASS = "nda_plugins.adapters.diffaugment.loss.NDAStyleGAN2Loss"
