"""The discriminator objective with negatives, for StyleGAN2-ADA-style ``Loss`` classes.

:class:`NDALossMixin` goes before upstream's loss in the bases
(``class L(NDALossMixin, StyleGAN2Loss)``). It needs from the base only what
``StyleGAN2Loss`` has: ``run_G(z, c, sync) -> (img, ws)``, ``run_D(img, c, sync) -> logits``
and ``accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)``. The concrete
class provides ``_report(name, value)`` (upstream's ``training_stats.report``).

What changes, for phases ``Dmain`` and ``Dboth`` only (``G*`` and ``Dreg`` run upstream's code):

* The fake side becomes ``(1 - w) * E[softplus(D(G(z)))] + w * E[softplus(D(neg))]``, with
  negatives made by the :class:`nda_plugins.NDASession` from the real batch of the same round.
  ``weighted``: one extra ``run_D`` pass on the negatives. ``replace``: each fake row is replaced
  by its negative with probability ``w`` (:func:`nda_plugins.losses.replace_fakes`), one pass.
* Every discriminator input goes through ``run_D``, so ADA's ``augment_pipe`` (or DiffAugment)
  transforms negatives exactly as fakes. A negative keeps its source's conditioning ``c``.
* The DDP sync stays where upstream has it: fake and negative passes use ``sync=False``; the
  real pass carries ``sync`` (for ``Dboth`` with R1, upstream's own ``Dreg`` pass runs after it and
  carries the sync).
* ``sign(D(real))`` goes to ANDA through ``NDASession.observe(step, real_logits=...)``.

The step is ``session.num_advances``, which :meth:`NDALossMixin.nda_advance` moves once per
training iteration and which snapshots save, so schedules continue across ``--resume``.
"""

from __future__ import annotations

from typing import Any

import torch

from nda_plugins import losses as _losses

D_PHASES = ("Dmain", "Dboth")


def _per_sample_fake(logits, neg_logits=None, weight: float = 0.0):
    """Upstream's ``(B, 1)`` per-sample logistic fake side, from :mod:`nda_plugins.losses`:
    ``(1 - w) * softplus(D(fake)) + w * softplus(D(neg))`` (just ``softplus(D(fake))`` at w = 0)."""
    return _losses.fake_side_loss(logits, neg_logits, nda_weight=weight, kind="logistic", reduction="none").unsqueeze(1)


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def make_session(nda_kwargs: dict[str, Any] | None):
    """An ``NDASession`` from ``loss_kwargs.nda_kwargs`` (``None``/``{}``: NDA off -> ``None``).

    The seed becomes ``seed * world_size + rank`` so that ranks draw different negatives,
    as upstream seeds its own generators.
    """
    if not nda_kwargs:
        return None
    if not isinstance(nda_kwargs, dict):
        raise TypeError(f"nda_kwargs must be a dict of NDASession arguments, got {type(nda_kwargs).__name__}")
    from nda_plugins import NDASession

    kwargs = dict(nda_kwargs)
    rank, world = _world()
    kwargs["seed"] = int(kwargs.get("seed", 0)) * world + rank
    return NDASession(**kwargs)


class NDASessionMixin:
    """What every NDA loss for a StyleGAN2-ADA-style codebase holds: the session, its step,
    and its checkpoint state.

    Args:
        *args, **kwargs: upstream's loss arguments, passed on unchanged.
        nda_kwargs: ``NDASession`` arguments (from ``--nda*`` flags); ``None`` keeps upstream's
            loss exactly.

    Attributes:
        nda: the :class:`nda_plugins.NDASession`, or ``None``.
    """

    def __init__(self, *args: Any, nda_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nda = make_session(nda_kwargs)

    # -- provided by the concrete class -------------------------------------------------------

    def _report(self, name: str, value: Any) -> None:  # pragma: no cover - replaced
        """Record a statistic (upstream: ``training_stats.report``)."""

    # -- per training iteration ---------------------------------------------------------------

    @property
    def nda_step(self) -> int:
        """The training iteration NDA is at (continues across resume)."""
        return 0 if self.nda is None else self.nda.num_advances

    def nda_advance(self) -> float | None:
        """Once per training iteration on every rank, beside ADA's ``p`` adjustment.

        Returns:
            ANDA's alpha after the step, or ``None``.
        """
        if self.nda is None:
            return None
        return self.nda.advance()

    # -- checkpoints ----------------------------------------------------------------------------

    def nda_state_dict(self) -> dict[str, Any] | None:
        """The session's state for a snapshot (call on every rank), or ``None`` when NDA is off."""
        return None if self.nda is None else self.nda.state_dict()

    def nda_load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`nda_state_dict`'s output."""
        if self.nda is None:
            raise ValueError("this loss has no NDA session (run without --nda); cannot load NDA state")
        self.nda.load_state_dict(state)


class NDALossMixin(NDASessionMixin):
    """Negatives on the discriminator's fake side of a StyleGAN2-ADA ``Loss``.

    Takes the same arguments as :class:`NDASessionMixin` (``nda_kwargs`` plus upstream's).
    """

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        if self.nda is None or phase not in D_PHASES:
            return super().accumulate_gradients(
                phase=phase, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c, sync=sync, gain=gain)
        step = self.nda_step
        w = self.nda.weight(step)
        # Sorted names: training_stats needs the same names in the same order on every rank.
        for name, value in sorted(self.nda.report(step).items()):
            self._report(name, value)

        # Fake side: (1 - w) fakes + w negatives, no DDP sync (the real pass syncs).
        with torch.autograd.profiler.record_function("Dgen_forward"):
            gen_img, _ = self.run_G(gen_z, gen_c, sync=False)
            loss_fake = self.nda_fake_side(gen_img, gen_c, real_img, real_c, step=step, weight=w)
        with torch.autograd.profiler.record_function("Dgen_backward"):
            loss_fake.mean().mul(gain).backward()

        # Real side. For Dboth with R1, upstream's Dreg pass below carries the sync and R1.
        r1_after = phase == "Dboth" and getattr(self, "r1_gamma", 0) != 0
        real_sync = False if r1_after else sync
        with torch.autograd.profiler.record_function("Dreal_forward"):
            real_logits = self.run_D(real_img.detach(), real_c, sync=real_sync)
            self._report("Loss/scores/real", real_logits)
            self._report("Loss/signs/real", real_logits.sign())
            self.nda.observe(step, real_logits=real_logits.detach())
            loss_real = _losses.real_loss(real_logits, kind="logistic", reduction="none").unsqueeze(1)
            self._report("Loss/D/loss", loss_fake + loss_real)
        with torch.autograd.profiler.record_function("Dreal_backward"):
            loss_real.mean().mul(gain).backward()
        if r1_after:
            super().accumulate_gradients(
                phase="Dreg", real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c, sync=sync, gain=gain)

    def nda_fake_side(self, gen_img, gen_c, real_img, real_c, *, step: int, weight: float) -> torch.Tensor:
        """Per-sample fake-side loss ``(B, 1)`` with negatives made from ``real_img``.

        Args:
            gen_img: ``(B, C, H, W)`` generated images (with grad to G if any).
            gen_c: ``(B, c_dim)`` their conditioning.
            real_img: ``(B, C, H, W)`` real images of this round, in upstream's ``[-1, 1]``.
            real_c: ``(B, c_dim)`` their conditioning (a negative keeps its source's).
            step: the training iteration.
            weight: ``w`` for this step, a Python float.

        Returns:
            ``(B, 1)`` losses whose mean is the estimator of the fake side.
        """
        if weight <= 0.0:
            gen_logits = self.run_D(gen_img, gen_c, sync=False)
            self._report("Loss/scores/fake", gen_logits)
            self._report("Loss/signs/fake", gen_logits.sign())
            return _per_sample_fake(gen_logits)
        neg, neg_c = self.nda.negatives(real_img.detach(), real_c, step=step)
        neg = neg.to(gen_img.dtype)
        if neg_c is None:
            neg_c = real_c
        if self.nda.mode == "replace":
            generator = self.nda.generator_for(gen_img.device)
            mixed, replaced = _losses.replace_fakes(gen_img, neg, nda_weight=weight, generator=generator)
            mixed_c = _losses.select_replaced(replaced, gen_c, neg_c.to(gen_c.dtype))
            logits = self.run_D(mixed, mixed_c, sync=False)
            self._report("Loss/scores/fake", logits)
            self._report("Loss/signs/fake", logits.sign())
            self._report("NDA/replaced", replaced.to(logits.dtype))
            return _per_sample_fake(logits)
        gen_logits = self.run_D(gen_img, gen_c, sync=False)
        neg_logits = self.run_D(neg, neg_c.to(gen_c.dtype), sync=False)
        self._report("Loss/scores/fake", gen_logits)
        self._report("Loss/signs/fake", gen_logits.sign())
        self._report("NDA/scores/neg", neg_logits)
        self._report("NDA/signs/neg", neg_logits.sign())
        return _per_sample_fake(gen_logits, neg_logits, weight)
