"""Training and probe data: the embedded procedural classes, or any image folder.

Both are held in memory as ``[-1, 1]`` float tensors (small images: 32x32 by default), so a
step's batch is an index into a tensor. Which images a step uses is a pure function of
``(seed, step)`` (:func:`batch_indices`), so a resumed run sees the same batches as an
uninterrupted one, and every rank takes its own slice of the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from nda_plugins.demo.shape_classes import CLASSES, shape_classes

__all__ = ["ImageData", "batch_indices", "embedded", "image_folder"]


@dataclass
class ImageData:
    """Images and labels for training (labels unused) and for the probes.

    Attributes:
        train_x: ``(N, 3, S, S)`` float32 in ``[-1, 1]``; train_y: ``(N,)`` int64.
        test_x: ``(N', 3, S, S)``; test_y: ``(N',)``.
        classes: class names, indexed by label.
        source: where the images came from (for the results file).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str

    def to(self, device: torch.device | str) -> "ImageData":
        """A copy with every tensor on ``device``."""
        return ImageData(self.train_x.to(device), self.train_y.to(device), self.test_x.to(device),
                         self.test_y.to(device), self.classes, self.source)


def embedded(train_per_class: int = 400, test_per_class: int = 100, *, size: int = 32, seed: int = 0) -> ImageData:
    """The procedural ten-class shapes (:mod:`nda_plugins.demo.shape_classes`); train and test
    sets are drawn from different seeds."""
    g = torch.Generator().manual_seed(seed)
    train_x, train_y = shape_classes(train_per_class, size=size, generator=g)
    test_x, test_y = shape_classes(test_per_class, size=size, generator=g)
    return ImageData(train_x, train_y, test_x, test_y, list(CLASSES), f"embedded shape_classes (seed {seed})")


def _load_folder(path: Path, size: int):
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:  # pragma: no cover - torchvision comes with the lightly extra
        raise ImportError("--data needs torchvision: pip install 'nda-plugins[lightly]'") from exc
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    try:
        ds = datasets.ImageFolder(str(path), transform=tf)
    except (FileNotFoundError, RuntimeError) as exc:
        raise ValueError(f"--data: expected a folder with one sub-folder of images per class, got {str(path)!r}: {exc}") from exc
    if len(ds) == 0:
        raise ValueError(f"--data: no images found under {str(path)!r}")
    xs, ys = zip(*(ds[i] for i in range(len(ds))))  # loading once, not in the training loop
    return torch.stack(xs) * 2 - 1, torch.tensor(ys, dtype=torch.long), list(ds.classes)


def image_folder(path: str | Path, *, size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """Images from a folder with one sub-folder per class (torchvision's ``ImageFolder``).

    If ``path`` holds ``train/`` and ``val/`` (or ``test/``) sub-folders, those are the two sets;
    otherwise a random ``test_fraction`` of the images (from ``seed``) is held out for the probes.
    Images are resized and centre-cropped to ``size`` and kept in memory.

    Raises:
        ValueError: ``path`` is not a folder of class folders with images, or classes differ
            between ``train/`` and ``val/``.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"--data: expected an existing folder, got {str(path)!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    held_out = next((path / n for n in ("val", "test") if (path / n).is_dir()), None)
    if (path / "train").is_dir() and held_out is not None:
        train_x, train_y, classes = _load_folder(path / "train", size)
        test_x, test_y, test_classes = _load_folder(held_out, size)
        if test_classes != classes:
            raise ValueError(f"--data: {held_out.name}/ has classes {test_classes}, train/ has {classes}")
    else:
        x, y, classes = _load_folder(path, size)
        n_test = max(1, int(round(test_fraction * len(x))))
        if n_test >= len(x):
            raise ValueError(f"--data: {len(x)} images are too few to hold out a test set")
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        test, train = perm[:n_test], perm[n_test:]
        train_x, train_y, test_x, test_y = x[train], y[train], x[test], y[test]
    return ImageData(train_x, train_y, test_x, test_y, classes, str(path))


def batch_indices(step: int, *, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Indices of this rank's share of the global batch of ``step``.

    Epoch ``e`` visits the images in the order of a permutation seeded by ``(seed, e)``; the
    last incomplete global batch of an epoch is dropped.

    Args:
        step: training step (>= 0).
        n: dataset size.
        batch_size: global batch size (all ranks), divisible by ``world_size``, at most ``n``.
        seed, rank, world_size: as in training.

    Returns:
        ``(batch_size // world_size,)`` int64 CPU tensor.
    """
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) must be at most the number of training images ({n})")
    if batch_size % world_size:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
    per_epoch = n // batch_size
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    per_rank = batch_size // world_size
    start = pos * batch_size + rank * per_rank
    return perm[start:start + per_rank]
