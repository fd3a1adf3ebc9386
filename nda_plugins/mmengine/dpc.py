"""Dense Predictive Coding (Han, Xie & Zisserman, 2019) as an mmengine ``BaseModel``, with video NDA.

A clip ``(B, C, T, H, W)`` is cut into ``num_blocks`` blocks of ``T / num_blocks`` frames. A small
3D-conv encoder maps each block to a feature map ``(D, h, w)``; a ConvGRU aggregates the first
``num_blocks - pred_steps`` blocks into a context; a predictor then rolls out the next
``pred_steps`` block features (each prediction fed back into the GRU). The loss is the dense
InfoNCE over all ``pred_steps x h x w`` positions (every other position of every clip of the
batch is a negative). With an NDA session, each clip also gets an NDA view (one draw per clip,
applied to every frame); the encoder features of its future blocks are one extra negative per
position, weighted by ``w`` (:func:`nda_plugins.contrastive.nda_info_nce_dense`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from nda_plugins._session import NDASession
from nda_plugins.contrastive import nda_info_nce_dense
from nda_plugins.registry import MODELS


class BlockEncoder(nn.Module):
    """3D-conv encoder of one block: ``(N, C, L, H, W) -> (N, D, H/4, W/4)`` (time pooled)."""

    def __init__(self, in_channels: int = 3, width: int = 32, dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(in_channels, width, (3, 3, 3), stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, dim, (3, 3, 3), stride=(1, 2, 2), padding=1),
            nn.BatchNorm3d(dim),
            nn.ReLU(inplace=True),
            nn.Conv3d(dim, dim, (1, 3, 3), padding=(0, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=2)


class ConvGRUCell(nn.Module):
    """Convolutional GRU cell over ``(B, D, h, w)`` maps."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.gates = nn.Conv2d(2 * dim, 2 * dim, kernel, padding=kernel // 2)
        self.cand = nn.Conv2d(2 * dim, dim, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        c = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * c


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


@MODELS.register_module()
class DPC(BaseModel):
    """Dense Predictive Coding with optional NDA video negatives.

    Follows the :class:`nda_plugins.mmengine.hooks.NDAHook` protocol: ``nda_session``,
    ``nda_step``, ``nda_weight``, ``nda_terms``.

    Args:
        num_blocks: blocks per clip (``T`` must be divisible by it).
        pred_steps: future blocks predicted (``< num_blocks``).
        dim: feature dimension ``D``.
        width: encoder width.
        nda: an :class:`NDASession`, a dict of its keyword arguments, or ``None`` (plain DPC).
        temperature: InfoNCE temperature (DPC: raw dot products, ``1``).
        data_preprocessor: mmengine data preprocessor config.

    Inputs: ``forward(inputs, labels=None, mode)`` with ``inputs`` ``(B, C, T, H, W)``.
    ``mode='loss'`` returns ``{"loss_dpc": scalar}``; ``'tensor'``/``'predict'`` return the pooled
    context ``(B, D)`` (the probe's features).
    """

    def __init__(
        self,
        num_blocks: int = 4,
        pred_steps: int = 2,
        dim: int = 64,
        width: int = 32,
        nda: NDASession | dict | None = None,
        temperature: float = 1.0,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.num_blocks = _check_int("num_blocks", num_blocks, 2)
        self.pred_steps = _check_int("pred_steps", pred_steps, 1)
        if pred_steps >= num_blocks:
            raise ValueError(f"pred_steps must be < num_blocks={num_blocks}, got {pred_steps}")
        _check_int("dim", dim, 1)
        _check_int("width", width, 1)
        if isinstance(nda, dict):
            nda = NDASession(**nda)
        if nda is not None and not isinstance(nda, NDASession):
            raise TypeError(f"nda must be an NDASession, a dict of its arguments or None, got {type(nda).__name__}")
        self.nda_session = nda
        self.nda_step = 0
        self.nda_weight = 0.0 if nda is None else nda.weight(0)
        self.nda_terms: dict[str, Any] = {}
        self.temperature = temperature
        self.encoder = BlockEncoder(3, width, dim)
        self.gru = ConvGRUCell(dim)
        self.predictor = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 1))

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 5:
            raise ValueError(f"inputs must be a (B, C, T, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
        b, c, t, h, w = x.shape
        if t % self.num_blocks:
            raise ValueError(f"inputs' T={t} must be divisible by num_blocks={self.num_blocks}")
        length = t // self.num_blocks
        # (B, C, K, L, H, W) -> (B, K, C, L, H, W)
        return x.reshape(b, c, self.num_blocks, length, h, w).transpose(1, 2)

    def encode(self, blocks: torch.Tensor) -> torch.Tensor:
        """``(B, K, C, L, H, W)`` blocks -> ``(B, K, D, h, w)`` features."""
        b, k = blocks.shape[:2]
        feats = self.encoder(blocks.reshape(b * k, *blocks.shape[2:]))
        return feats.reshape(b, k, *feats.shape[1:])

    def _context(self, feats: torch.Tensor) -> torch.Tensor:
        hidden = torch.zeros_like(feats[:, 0])
        for i in range(feats.shape[1]):
            hidden = self.gru(feats[:, i], hidden)
        return hidden

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, mode: str = "tensor"):
        blocks = self._blocks(inputs)
        if mode in ("tensor", "predict"):
            return self._context(self.encode(blocks)).mean(dim=(2, 3))
        if mode != "loss":
            raise ValueError(f"mode must be 'loss', 'tensor' or 'predict', got {mode!r}")
        seen = self.num_blocks - self.pred_steps
        session, w = self.nda_session, float(self.nda_weight)
        use_nda = session is not None and w > 0
        if use_nda:
            neg, _ = session.negatives(inputs, step=self.nda_step)
            # One encoder pass over real and NDA future blocks together.
            feats_all = self.encode(torch.cat([blocks, self._blocks(neg)[:, seen:]], dim=1))
            feats, neg_feats = feats_all[:, : self.num_blocks], feats_all[:, self.num_blocks :]
        else:
            feats = self.encode(blocks)
        hidden = self._context(feats[:, :seen])
        preds = []
        for _ in range(self.pred_steps):
            p = self.predictor(hidden)
            preds.append(p)
            hidden = self.gru(p, hidden)
        pred = torch.stack(preds, 1)  # (B, P, D, h, w)
        target = feats[:, seen:]
        b, p, d, h, w_ = pred.shape
        flat = lambda t: t.permute(0, 1, 3, 4, 2).reshape(b, p * h * w_, d)  # noqa: E731
        nda_keys = flat(neg_feats).unsqueeze(2) if use_nda else None
        loss = nda_info_nce_dense(
            flat(pred), flat(target), nda_keys, temperature=self.temperature, nda_weight=w if use_nda else None
        )
        self.nda_terms = {"nda_used": float(use_nda)}
        if use_nda:
            with torch.no_grad():
                self.nda_terms["nda_key_sim"] = (flat(pred) * nda_keys[:, :, 0]).sum(-1).mean()
                self.nda_terms["pos_sim"] = (flat(pred) * flat(target)).sum(-1).mean()
        return {"loss_dpc": loss}


__all__ = ["DPC", "BlockEncoder", "ConvGRUCell"]
