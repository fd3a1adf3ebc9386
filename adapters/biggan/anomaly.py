"""A trained BigGAN-PyTorch discriminator as a scorer for :mod:`nda_plugins.anomaly`.

``nda anomaly-score --biggan WEIGHTS_DIR --upstream CHECKOUT`` uses :func:`biggan_scorer` as the
factory of :func:`nda_plugins.anomaly.load_scorer`, the path any ``torch.nn.Module`` takes.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn


class LabelledD(nn.Module):
    """``D(x, y)`` with a fixed class ``label`` for every image: ``forward(x) -> (B, 1)`` scores.

    Args:
        D: upstream's ``Discriminator`` (``forward(x, y)``).
        label: the class index fed with every image (``0`` for an ``--unconditional`` run).
    """

    def __init__(self, D: nn.Module, label: int = 0) -> None:
        super().__init__()
        self.D = D
        self.label = int(label)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.full((x.shape[0],), self.label, dtype=torch.long, device=x.device)
        return self.D(x, y)


def biggan_scorer(*, weights: str | Path, upstream: str | Path, label: int = 0,
                  name_suffix: str | None = None) -> LabelledD:
    """Upstream's ``Discriminator`` rebuilt from a run's saved config, with its trained weights.

    Args:
        weights: the run's weight folder (``weights_root/experiment_name``) holding ``D.pth`` and
            ``state_dict.pth`` (or ``D_<suffix>.pth`` ... with ``name_suffix``, e.g. ``best0``).
        upstream: a BigGAN-PyTorch checkout (for its ``BigGAN.py`` / ``layers.py``).
        label: class index fed with every image; must be below the run's ``n_classes``.
        name_suffix: upstream's checkpoint suffix (``copy0``, ``best0``), or ``None``.

    Raises:
        ValueError: a missing file or checkout, or a label outside the run's classes.
    """
    folder, root = Path(weights), Path(upstream)
    suffix = f"_{name_suffix}" if name_suffix else ""
    d_path, s_path = folder / f"D{suffix}.pth", folder / f"state_dict{suffix}.pth"
    for p in (d_path, s_path):
        if not p.is_file():
            raise ValueError(f"weights: {p} is missing (expected upstream's D.pth and state_dict.pth)")
    if not (root / "BigGAN.py").is_file():
        raise ValueError(f"upstream: {root} is not a BigGAN-PyTorch checkout (no BigGAN.py)")
    # The run's own file: it pickles the config with nn.ReLU objects, so weights_only=False.
    saved: Any = torch.load(s_path, map_location="cpu", weights_only=False)
    config = dict(saved["config"]) if isinstance(saved, dict) and isinstance(saved.get("config"), dict) else None
    if config is None:
        raise ValueError(f"weights: {s_path} holds no 'config' (not upstream's state_dict.pth)")
    n_classes = int(config.get("n_classes", 1))
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n_classes:
        raise ValueError(f"label must be an int in [0, {n_classes}) for this run, got {label!r}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    model = importlib.import_module(config.get("model", "BigGAN"))
    D = model.Discriminator(**{**config, "skip_init": True, "D_fp16": False})
    D.load_state_dict(torch.load(d_path, map_location="cpu", weights_only=True))
    return LabelledD(D.float(), label)
