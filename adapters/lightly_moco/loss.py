"""``NDANTXentLoss``: lightly's ``NTXentLoss`` with a memory bank, plus per-query NDA keys.

MoCo's InfoNCE (NDA paper eq. 8) for query ``q_i``, positive key ``k_i``, queue ``Q`` and the
keys ``n_{i,m}`` of NDA views of the query's own image, all L2-normalised::

    loss_i = -log exp(q_i.k_i/t) / (exp(q_i.k_i/t) + sum_j exp(q_i.Q_j/t) + w sum_m exp(q_i.n_{i,m}/t))

The logits come from :func:`nda_plugins.contrastive.info_nce_logits`; the queue is lightly's own
``MemoryBankModule``, queried and updated exactly as ``NTXentLoss`` does it (so
``gather_distributed=True`` gathers the positive keys of every rank before enqueueing them). NDA
keys only ever enter the logits: they are never enqueued. Without NDA keys, or with ``w = 0``, the
forward pass *is* ``NTXentLoss.forward``.

lightly registers the bank as a non-persistent buffer, so ``NTXentLoss.state_dict()`` drops it;
this subclass carries the bank and its pointer in the module's extra state, so a plain
``loss.state_dict()`` / ``loss.load_state_dict()`` saves and restores the queue exactly.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss

from nda_plugins.contrastive import info_nce_logits

__all__ = ["NDANTXentLoss"]

_STATE_VERSION = 1


class NDANTXentLoss(NTXentLoss):
    """MoCo's queue InfoNCE with per-query NDA keys as extra, down-weighted negatives.

    Args:
        temperature: softmax temperature (MoCo-v2: 0.2).
        memory_bank_size: ``(K, D)``: queue length and embedding size; ``0`` disables the queue
            (then NDA keys are refused: use :func:`nda_plugins.contrastive.nda_info_nce` for
            in-batch negatives).
        gather_distributed: gather every rank's positive keys before enqueueing (lightly's
            meaning).

    Example:
        >>> import torch
        >>> loss_fn = NDANTXentLoss(temperature=0.2, memory_bank_size=(64, 8))
        >>> q, k = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
        >>> nda = torch.randn(4, 2, 8)  # two NDA keys per query
        >>> loss_fn(q, k, nda_keys=nda, nda_weight=0.5).shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.2, memory_bank_size: Any = 0, gather_distributed: bool = False):
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        super().__init__(
            temperature=float(temperature), memory_bank_size=memory_bank_size, gather_distributed=gather_distributed
        )

    @property
    def has_queue(self) -> bool:
        """Whether a memory bank (queue) is configured."""
        return self.memory_bank.size[0] > 0

    def forward(
        self,
        out0: torch.Tensor,
        out1: torch.Tensor,
        nda_keys: torch.Tensor | None = None,
        nda_weight: float | None = None,
    ) -> torch.Tensor:
        """The loss; enqueues ``out1`` when ``out0`` requires grad (as ``NTXentLoss`` does).

        Args:
            out0: ``(B, D)`` queries (query encoder, with grad).
            out1: ``(B, D)`` positive keys (momentum encoder).
            nda_keys: ``(B, M, D)`` momentum-encoder keys of ``M`` NDA views of each query's own
                image, or ``None``. Never enqueued.
            nda_weight: ``w`` in ``[0, 1]`` scaling the NDA terms of the denominator (``+log w`` on
                their logits); ``None`` means ``1``; ``0`` gives exactly ``NTXentLoss``.

        Returns:
            The mean loss over the batch, a scalar.
        """
        if nda_weight is not None:
            if isinstance(nda_weight, bool) or not isinstance(nda_weight, numbers.Real):
                raise TypeError(f"nda_weight must be a number in [0, 1] or None, got {type(nda_weight).__name__}")
            if not 0.0 <= float(nda_weight) <= 1.0:
                raise ValueError(f"nda_weight must be in [0, 1], got {nda_weight}")
        if nda_keys is None or nda_weight == 0:
            return super().forward(out0, out1)
        if not self.has_queue:
            raise ValueError(
                "nda_keys need a memory bank: build NDANTXentLoss(memory_bank_size=(K, D)) with K > 0 "
                "(for in-batch negatives use nda_plugins.contrastive.nda_info_nce)"
            )
        if not isinstance(nda_keys, torch.Tensor) or nda_keys.dim() != 3 or nda_keys.shape[0] != out0.shape[0]:
            raise ValueError(
                f"nda_keys must be a (B={out0.shape[0]}, M, D) tensor, got "
                f"{tuple(nda_keys.shape) if isinstance(nda_keys, torch.Tensor) else type(nda_keys).__name__}"
            )
        out0 = F.normalize(out0, dim=1)
        out1 = F.normalize(out1, dim=1)
        nda_keys = F.normalize(nda_keys.detach(), dim=-1)
        # Same bank call as NTXentLoss: a snapshot of the queue, then out1 (only) is enqueued.
        out1, bank = self.memory_bank(out1, update=out0.requires_grad)
        queue = bank.to(out0.device)
        queue = queue.T if self.memory_bank.feature_dim_first else queue  # (K, D)
        logits, targets = info_nce_logits(
            out0, out1, queue, nda_keys.to(out0.dtype),
            temperature=self.temperature, nda_weight=nda_weight, normalize=False,
        )
        return self.cross_entropy(logits, targets)

    # ------------------------------------------------------------------------------------
    # Checkpoints: the queue travels in state_dict() as this module's extra state
    # ------------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        """The queue and its write pointer (cloned), for ``state_dict()``."""
        return {
            "version": _STATE_VERSION,
            "bank": self.memory_bank.bank.detach().clone(),
            "bank_ptr": self.memory_bank.bank_ptr.detach().clone(),
        }

    def set_extra_state(self, state: Any) -> None:
        """Restore what :meth:`get_extra_state` produced; refuses a queue of another size.

        Raises:
            ValueError: ``state`` is not this loss's queue state; nothing is changed.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"queue state must be a dict with version {_STATE_VERSION} from NDANTXentLoss.state_dict(), got "
                f"{type(state).__name__}{' version ' + repr(state.get('version')) if isinstance(state, dict) else ''}"
            )
        bank, ptr = state.get("bank"), state.get("bank_ptr")
        mine = self.memory_bank
        if not isinstance(bank, torch.Tensor) or bank.shape != mine.bank.shape:
            raise ValueError(
                f"queue state: bank must have shape {tuple(mine.bank.shape)} (memory_bank_size), got "
                f"{tuple(bank.shape) if isinstance(bank, torch.Tensor) else type(bank).__name__}"
            )
        if not isinstance(ptr, torch.Tensor) or ptr.shape != mine.bank_ptr.shape or ptr.dtype != mine.bank_ptr.dtype:
            raise ValueError(f"queue state: bank_ptr must be a {mine.bank_ptr.dtype} tensor of shape (1,), got {ptr!r}")
        if mine.size[0] > 0 and not 0 <= int(ptr[0]) < mine.size[0]:
            raise ValueError(f"queue state: bank_ptr must be in [0, {mine.size[0]}), got {int(ptr[0])}")
        with torch.no_grad():
            mine.bank.copy_(bank)
            mine.bank_ptr.copy_(ptr)
