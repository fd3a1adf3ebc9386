"""Negatives for a loss whose discriminator step we do not rewrite: intercept its ``run_D``.

For phases ``Dmain``/``Dboth`` :class:`NDAInterceptMixin` runs upstream's own
``accumulate_gradients`` (InsGen's contrastive terms, R1, reports, DDP sync all unchanged) and
relies on one property of StyleGAN2-ADA-style losses: in those phases the first ``run_D`` call
scores the generated batch (``sync=False``) and the second scores the real batch. Then:

* first call, ``weighted``: D scores the fakes and, through the same ``run_D`` (augmentation
  included), the negatives made from this round's reals; ``w * softplus(D(neg))`` is
  back-propagated at once (``sync=False``), and the fakes' logits are returned as
  ``(1 - w) * l + w * l.detach()``: the same values, with gradients scaled by ``1 - w``. Upstream's
  ``softplus(l)`` term therefore back-propagates ``(1 - w) * E[softplus(D(G(z)))]``.
* first call, ``replace``: each fake row is replaced by its negative with probability ``w``
  (labels follow) before D, in the same single pass.
* second call: the real logits go to ANDA through ``NDASession.observe``.

Negatives keep their source's conditioning ``c``. G phases and ``Dreg`` are untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from nda_plugins import losses as _losses

from ..stylegan2_ada.mixin import D_PHASES, NDASessionMixin, _per_sample_fake


class NDAInterceptMixin(NDASessionMixin):
    """Put it before the upstream loss in the bases; see the module docstring.

    Args:
        *args, **kwargs: upstream's loss arguments.
        nda_kwargs: ``NDASession`` arguments; ``None`` keeps upstream's loss exactly.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nda_round: dict[str, Any] | None = None

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain, **kwargs):
        if self.nda is None or phase not in D_PHASES:
            return super().accumulate_gradients(phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                                gen_c=gen_c, sync=sync, gain=gain, **kwargs)
        step = self.nda_step
        for name, value in sorted(self.nda.report(step).items()):
            self._report(name, value)
        self._nda_round = {"step": step, "weight": self.nda.weight(step), "real": real_img, "real_c": real_c,
                           "gain": gain, "calls": 0}
        try:
            return super().accumulate_gradients(phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z,
                                                gen_c=gen_c, sync=sync, gain=gain, **kwargs)
        finally:
            self._nda_round = None

    def run_D(self, img, c, sync):
        r = self._nda_round
        if r is None:
            return super().run_D(img, c, sync)
        r["calls"] += 1
        if r["calls"] == 1:
            return self._nda_fake_pass(img, c, r)
        logits = super().run_D(img, c, sync)
        if r["calls"] == 2:
            self.nda.observe(r["step"], real_logits=logits.detach())
        return logits

    def _nda_fake_pass(self, gen_img, gen_c, r):
        w = r["weight"]
        if w <= 0.0:
            return super().run_D(gen_img, gen_c, False)
        neg, neg_c = self.nda.negatives(r["real"].detach(), r["real_c"], step=r["step"])
        neg = neg.to(gen_img.dtype)
        neg_c = (r["real_c"] if neg_c is None else neg_c).to(gen_c.dtype)
        if self.nda.mode == "replace":
            generator = self.nda.generator_for(gen_img.device)
            mixed, replaced = _losses.replace_fakes(gen_img, neg, nda_weight=w, generator=generator)
            self._report("NDA/replaced", replaced.to(gen_img.dtype))
            return super().run_D(mixed, _losses.select_replaced(replaced, gen_c, neg_c), False)
        gen_logits = super().run_D(gen_img, gen_c, False)
        neg_logits = super().run_D(neg, neg_c, False)
        self._report("NDA/scores/neg", neg_logits)
        self._report("NDA/signs/neg", neg_logits.sign())
        loss_neg = _per_sample_fake(neg_logits)  # the logistic fake term, on the negatives
        self._report("NDA/loss", loss_neg)
        with torch.autograd.profiler.record_function("Dneg_backward"):
            loss_neg.mean().mul(w * r["gain"]).backward()
        return gen_logits * (1.0 - w) + gen_logits.detach() * w
