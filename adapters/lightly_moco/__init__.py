"""MoCo-v2 with NDA negatives on lightly (NDA paper §6, Table 6, Fig. 9).

For each query, the momentum-encoder keys of NDA views of its own image (any registered
transform, or a mix drawn per batch) are extra negatives beside lightly's memory-bank queue,
down-weighted by ``w`` from :mod:`nda_plugins.schedules`; NDA keys are never enqueued. Uses
lightly's public API (``NTXentLoss``, ``MemoryBankModule``, ``MoCoProjectionHead``,
``update_momentum``, ``cosine_schedule``); needs the ``lightly`` extra.

* :mod:`.loss` -- :class:`~.loss.NDANTXentLoss`, lightly's ``NTXentLoss`` plus NDA keys, logits
  from :func:`nda_plugins.contrastive.info_nce_logits`; the queue is saved in its ``state_dict``.
* :mod:`.nda` -- :class:`~.nda.NDAViews`: the NDA sessions, the per-batch transform draw, ``w``.
* :mod:`.model`, :mod:`.augment`, :mod:`.data` -- the MoCo-v2 encoder pair, batched views,
  embedded procedural classes or an image folder.
* :mod:`.training` -- :class:`~.training.MoCoTrainer`: steps, exact-resume checkpoints,
  ``torch.distributed`` (gloo on CPU), kNN / linear probes and the Fig. 9 jigsaw distances.
* :mod:`.train` -- the command line (``python -m nda_plugins.adapters.lightly_moco.train``);
  ``train_nda.sh`` runs the baseline-vs-NDA comparison.
"""
