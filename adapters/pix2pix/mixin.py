"""The NDA discriminator step for pix2pix-style conditional GANs (upstream-independent).

:class:`Pix2PixNDAMixin` goes before upstream's ``Pix2PixModel`` in the bases. It needs from the
base what ``Pix2PixModel`` has: ``opt``, ``device``, ``save_dir``, ``netD`` (conditional, input
``cat(A, B)`` on channels), ``criterionGAN(pred, target_is_real)``, ``real_A`` / ``real_B`` /
``fake_B`` after ``forward()``, ``backward_D()``, ``optimize_parameters()``,
``save_networks(epoch)``, ``load_networks(epoch)`` and ``setup(opt)``.

With ``--nda`` the discriminator's objective becomes (pix2pix halves D's loss)::

    loss_D = 0.5 * (L_real + (1 - w) * L_fake + w * L_NDA)

where ``L_NDA`` is upstream's ``criterionGAN`` on the negative pair ``(real_A, T(real_B))``
(:func:`nda_plugins.losses.conditional_pairs`): the real condition with a negative target.
``weighted`` runs one extra ``netD`` pass on the negative pairs; ``replace`` swaps each fake pair
for its negative pair with probability ``w`` (:func:`nda_plugins.losses.replace_fakes`), one pass.
G's objective is unchanged. Without ``--nda`` every method is upstream's.

The NDA step is ``session.num_advances`` (one per ``optimize_parameters``), saved with the networks
as ``<epoch>_nda_state.pth`` and restored by ``setup`` with ``--continue_train`` (and by
``load_networks``), so schedules
and the negatives' generator continue where they stopped.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

from nda_plugins import losses as _losses

from . import options as _options

#: file name of the NDA state beside ``<epoch>_net_D.pth``
STATE_FILE = "{epoch}_nda_state.pth"
STATE_VERSION = 1


def _world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def make_session(kwargs: dict[str, Any]):
    """An ``NDASession`` from :func:`.options.session_kwargs` (``{}``: NDA off -> ``None``).

    The seed becomes ``seed * world_size + rank`` so DDP ranks draw different negatives.
    """
    if not kwargs:
        return None
    from nda_plugins import NDASession

    kwargs = dict(kwargs)
    rank, world = _world()
    kwargs["seed"] = int(kwargs.get("seed", 0)) * world + rank
    return NDASession(**kwargs)


class Pix2PixNDAMixin:
    """NDA for upstream's ``Pix2PixModel``; see the module docstring.

    Attributes:
        nda: the :class:`nda_plugins.NDASession`, or ``None`` without ``--nda`` (or at test time).
        loss_D_NDA: upstream's GAN loss on the negative pairs of the last D step (``weighted``),
            or on the replaced rows only (``replace``; 0 when none was replaced).
    """

    def __init__(self, opt: Any) -> None:
        kwargs = _options.session_kwargs(opt) if getattr(opt, "isTrain", False) else {}
        super().__init__(opt)
        self.nda = make_session(kwargs)
        if self.nda is not None:
            self.nda_kind = _options.GAN_MODES[opt.gan_mode]
            self.loss_names = list(self.loss_names) + ["D_NDA"]
            self.loss_D_NDA = torch.zeros((), device=self.device)

    # -- one training iteration -----------------------------------------------------------

    @property
    def loss_D_NDA(self) -> torch.Tensor:
        """The negatives' loss of the last D step, for upstream's log. In ``replace`` mode it is
        the fake-side loss of the replaced rows (0 when none was), worked out only when read:
        upstream reads it every ``--print_freq`` iterations, not every step."""
        pending = self.__dict__.pop("_nda_log", None)
        if pending is not None:
            pred, replaced = pending
            with torch.no_grad():
                per_row = _losses.fake_side_loss(pred, nda_weight=0.0, kind=self.nda_kind, reduction="none")
                chosen = replaced.to(per_row.dtype)
                self._loss_D_NDA = (per_row * chosen).sum() / chosen.sum().clamp(min=1.0)
        return self._loss_D_NDA

    @loss_D_NDA.setter
    def loss_D_NDA(self, value: torch.Tensor) -> None:
        self.__dict__.pop("_nda_log", None)
        self._loss_D_NDA = value

    @property
    def nda_step(self) -> int:
        """The NDA iteration (continues across ``--continue_train``)."""
        return 0 if self.nda is None else self.nda.num_advances

    def nda_negative_pairs(self, step: int) -> torch.Tensor:
        """``(B, C_A + C_B, H, W)`` negative pairs ``cat(real_A, T(real_B))`` for ``step``."""
        neg_B, _ = self.nda.negatives(self.real_B, step=step)
        return _losses.conditional_pairs(self.real_A, neg_B)

    def backward_D(self) -> None:
        """Upstream's ``backward_D`` with the negative pairs on the fake side."""
        if self.nda is None:
            return super().backward_D()
        step = self.nda.num_advances
        w = self.nda.weight(step)
        if w == 0.0:  # e.g. a curriculum before NDA starts: upstream's step, no negatives drawn
            pred_fake = self.netD(_losses.conditional_pairs(self.real_A, self.fake_B).detach())
            self.loss_D_fake = fake_side = self.criterionGAN(pred_fake, False)
            self.loss_D_NDA = torch.zeros((), device=fake_side.device)
        elif self.nda.mode == "replace":
            # A fake pair (A, G(A)) and its negative pair (A, T(B)) share the condition A, so
            # only the targets are mixed (replace_fakes' coins, drawn the same way), then paired.
            neg_B, _ = self.nda.negatives(self.real_B, step=step)
            fake_B = self.fake_B.detach()
            replaced = _losses.replace_mask(fake_B.shape[0], nda_weight=w, device=fake_B.device,
                                            generator=self.nda.generator_for(fake_B.device))
            pred = self.netD(torch.cat((self.real_A, _losses.select_replaced(replaced, fake_B, neg_B)), 1))
            self.loss_D_fake = fake_side = self.criterionGAN(pred, False)
            self._nda_log = (pred.detach(), replaced)  # loss_D_NDA, computed when read
        else:
            pred_fake = self.netD(_losses.conditional_pairs(self.real_A, self.fake_B).detach())
            self.loss_D_fake = self.criterionGAN(pred_fake, False)
            pred_neg = self.netD(self.nda_negative_pairs(step))
            self.loss_D_NDA = self.criterionGAN(pred_neg, False)
            fake_side = (1.0 - w) * self.loss_D_fake + w * self.loss_D_NDA
        pred_real = self.netD(torch.cat((self.real_A, self.real_B), 1))  # as upstream pairs them
        self.loss_D_real = self.criterionGAN(pred_real, True)
        self.nda.observe(step, real_logits=pred_real.detach())
        self.loss_D = (fake_side + self.loss_D_real) * 0.5
        self.loss_D.backward()

    def optimize_parameters(self) -> None:
        """Upstream's iteration, then one NDA step (schedules, ANDA)."""
        super().optimize_parameters()
        if self.nda is not None:
            self.nda.advance()

    # -- checkpoints ------------------------------------------------------------------------

    def nda_state_path(self, epoch: Any) -> str:
        """``<save_dir>/<epoch>_nda_state.pth`` (rank 0) or ``..._nda_state_rank<r>.pth`` (rank r > 0:
        each DDP rank has its own negatives' generator)."""
        rank = _world()[0]
        name = STATE_FILE.format(epoch=epoch)
        if rank:
            name = name[: -len(".pth")] + f"_rank{rank}.pth"
        return os.path.join(self.save_dir, name)

    def save_networks(self, epoch: Any) -> None:
        """Upstream's save (rank 0), plus this rank's NDA state (atomic: written, then renamed)."""
        super().save_networks(epoch)
        if self.nda is None:
            return
        path = self.nda_state_path(epoch)
        tmp = path + ".tmp"
        torch.save({"version": STATE_VERSION, "session": self.nda.state_dict()}, tmp)
        os.replace(tmp, path)

    def setup(self, opt: Any) -> None:
        """Upstream's setup; with ``--continue_train`` also the NDA state saved with the networks.

        (Upstream at 2a7afba loads the networks inside ``setup``, not through ``load_networks``.)
        """
        super().setup(opt)
        if self.nda is not None and getattr(opt, "continue_train", False):
            load_iter = getattr(opt, "load_iter", 0) or 0
            self.nda_load_state(f"iter_{load_iter}" if load_iter > 0 else opt.epoch)

    def load_networks(self, epoch: Any) -> None:
        """Upstream's load, plus the NDA state saved with those networks."""
        super().load_networks(epoch)
        if self.nda is not None:
            self.nda_load_state(epoch)

    def nda_load_state(self, epoch: Any) -> None:
        """Restore the NDA state saved as ``epoch``; a checkpoint without one starts NDA at step 0.

        Raises:
            ValueError: the file is not an NDA state file (the session is unchanged).
        """
        path = self.nda_state_path(epoch)
        if not os.path.isfile(path):
            warnings.warn(f"no NDA state at {path} (a checkpoint from a run without --nda?); "
                          "NDA starts from step 0", stacklevel=2)
            return
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(saved, dict) or saved.get("version") != STATE_VERSION or "session" not in saved:
            raise ValueError(f"{path} is not an NDA state file of version {STATE_VERSION}")
        self.nda.load_state_dict(saved["session"])
