"""Video clips for DPC: an embedded procedural dataset (moving shapes) or a folder of clips."""

from __future__ import annotations

import math
import os

import torch
from torch.utils.data import Dataset

from nda_plugins.registry import DATASETS

# Motion classes: (dx, dy) direction per frame, or a special motion.
MOTIONS = ("right", "left", "down", "up", "diagonal", "circle")


def render_clip(label: int, index: int, *, frames: int, size: int, seed: int) -> torch.Tensor:
    """One procedural clip: a shape moving with the motion of ``label`` over a noisy background.

    Returns:
        ``(3, frames, size, size)`` float in ``[0, 1]``; the same for the same arguments.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
    r = torch.rand(8, generator=gen)
    radius = size * (0.12 + 0.08 * r[0])
    cx0, cy0 = size * (0.3 + 0.4 * r[1]), size * (0.3 + 0.4 * r[2])
    speed = size * (0.04 + 0.03 * r[3])
    color = 0.5 + 0.5 * torch.rand(3, generator=gen)
    t = torch.arange(frames, dtype=torch.float32)
    name = MOTIONS[label]
    if name == "circle":
        angle = 2 * math.pi * (r[4] + t / frames)
        cx, cy = cx0 + 2 * speed * torch.cos(angle), cy0 + 2 * speed * torch.sin(angle)
    else:
        dx, dy = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1), "diagonal": (0.7, 0.7)}[name]
        cx = (cx0 + dx * speed * t) % size
        cy = (cy0 + dy * speed * t) % size
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    dist2 = (xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2  # (T, H, W)
    mask = (dist2 <= radius**2).float()
    background = 0.1 + 0.1 * torch.rand(3, 1, size, size, generator=gen)
    clip = background * (1 - mask) + color[:, None, None, None] * mask
    return clip.clamp(0, 1)


@DATASETS.register_module()
class MovingShapesVideo(Dataset):
    """Embedded procedural video dataset: one moving disc per clip, ``len(MOTIONS)`` motion classes.

    Args:
        num_clips: number of clips (labels cycle through the classes).
        frames: frames per clip.
        size: frame height and width.
        seed: dataset seed (train and test splits: different seeds).
        num_classes: how many of :data:`MOTIONS` to use (2..6).

    Items are ``{"inputs": (3, T, H, W) float, "labels": int64 scalar}``.
    """

    def __init__(self, num_clips: int = 64, frames: int = 8, size: int = 32, seed: int = 0, num_classes: int = 6) -> None:
        for name, value, low in (("num_clips", num_clips, 1), ("frames", frames, 1), ("size", size, 8), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= len(MOTIONS):
            raise ValueError(f"num_classes must be an int in [2, {len(MOTIONS)}], got {num_classes!r}")
        self.num_clips, self.frames, self.size, self.seed, self.num_classes = num_clips, frames, size, seed, num_classes
        self.metainfo = {"classes": MOTIONS[:num_classes]}

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        label = index % self.num_classes
        clip = render_clip(label, index, frames=self.frames, size=self.size, seed=self.seed)
        return {"inputs": clip, "labels": torch.tensor(label, dtype=torch.long)}


@DATASETS.register_module()
class VideoFolder(Dataset):
    """Clips saved as tensors in ``root/<class>/<name>.pt``: ``(T, H, W, C)`` uint8 or ``(C, T, H, W)`` float.

    Args:
        root: the folder; one subfolder per class.
        frames: frames taken from the start of each clip (clips must have at least as many).
    """

    def __init__(self, root: str, frames: int = 8) -> None:
        if not isinstance(root, (str, os.PathLike)) or not os.path.isdir(root):
            raise ValueError(f"root must be a folder of class subfolders holding .pt clips, got {root!r}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be an int >= 1, got {frames!r}")
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.items = [
            (os.path.join(root, c, f), i)
            for i, c in enumerate(classes)
            for f in sorted(os.listdir(os.path.join(root, c)))
            if f.endswith(".pt")
        ]
        if not self.items:
            raise ValueError(f"root={root!r} holds no <class>/<clip>.pt files")
        self.frames = frames
        self.metainfo = {"classes": tuple(classes)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, label = self.items[index]
        clip = torch.load(path, weights_only=True)
        if clip.dtype == torch.uint8:  # (T, H, W, C)
            clip = clip.permute(3, 0, 1, 2).float() / 255
        if clip.dim() != 4 or clip.shape[1] < self.frames:
            raise ValueError(f"clip {path!r} must be (C, T>={self.frames}, H, W) or (T, H, W, C) uint8, got {tuple(clip.shape)}")
        return {"inputs": clip[:, : self.frames].contiguous(), "labels": torch.tensor(label, dtype=torch.long)}


__all__ = ["MOTIONS", "MovingShapesVideo", "VideoFolder", "render_clip"]
