"""The MoCo-v2 model: a small convolutional backbone, lightly's projection head, momentum copies.

The backbone uses GroupNorm instead of BatchNorm: MoCo needs "shuffle BN" with BatchNorm (else
the key encoder's batch statistics leak which sample is the positive), and PyTorch's
``SyncBatchNorm`` has no CPU implementation; per-sample normalisation has neither problem, and it
makes a key independent of the other images in its momentum-encoder batch (positive keys and
NDA keys give the same values whether they are encoded together or apart).
"""

from __future__ import annotations

import copy

import torch
from lightly.models.modules.heads import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

__all__ = ["MoCoV2", "small_backbone"]


def _block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(8, c_out), nn.ReLU(inplace=True)]


def small_backbone(width: int = 32) -> nn.Sequential:
    """A 5-conv backbone for small images: ``(B, 3, H, W)`` -> ``(B, 4 * width)`` features.

    Args:
        width: channels of the first stage (a multiple of 8); stages have ``w, 2w, 4w``.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 8 or width % 8:
        raise ValueError(f"width must be a positive multiple of 8, got {width!r}")
    w = width
    layers = _block(3, w, 1) + _block(w, 2 * w, 2) + _block(2 * w, 2 * w, 1) + _block(2 * w, 4 * w, 2)
    layers += _block(4 * w, 4 * w, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class MoCoV2(nn.Module):
    """Query encoder (backbone + MLP head) and its momentum copy.

    Args:
        width: backbone width (features have ``4 * width`` dimensions).
        hidden_dim: hidden width of the 2-layer projection head (MoCo-v2: 2048 on ResNet-50).
        out_dim: embedding size ``D`` (MoCo-v2: 128).
    """

    def __init__(self, width: int = 32, hidden_dim: int = 256, out_dim: int = 64):
        super().__init__()
        self.backbone = small_backbone(width)
        self.feature_dim = 4 * width
        self.projection_head = MoCoProjectionHead(self.feature_dim, hidden_dim, out_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Queries: ``(B, 3, H, W)`` -> ``(B, D)`` (with grad)."""
        return self.projection_head(self.backbone(x))

    @torch.no_grad()
    def forward_momentum(self, x: torch.Tensor) -> torch.Tensor:
        """Keys from the momentum encoder: ``(B, 3, H, W)`` -> ``(B, D)`` (no grad)."""
        return self.projection_head_momentum(self.backbone_momentum(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of the query encoder (for probes): ``(B, 3, H, W)`` -> ``(B, 4w)``."""
        return self.backbone(x)

    @torch.no_grad()
    def update_momentum(self, m: float) -> None:
        """EMA step of the momentum encoder towards the query encoder (lightly's ``update_momentum``)."""
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)
