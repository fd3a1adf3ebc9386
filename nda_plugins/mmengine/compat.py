"""Workarounds for mmengine 0.10.7 on current torch."""

from __future__ import annotations

import os.path as osp

import torch

__all__ = ["enable_full_checkpoint_loading"]

_ENABLED = False


def _load_full(filename, map_location=None, **kwargs):
    # mmengine's default local loader calls torch.load without weights_only, which is True
    # since torch 2.6: its own checkpoints (message hub, numpy scalars) then fail to load.
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=False)


def enable_full_checkpoint_loading() -> None:
    """Let ``Runner.resume`` / ``load_checkpoint`` read mmengine checkpoints on torch >= 2.6.

    Registers a loader for local paths (prefix ``''``) that calls ``torch.load(...,
    weights_only=False)``. Only load checkpoints you trust (full unpickling). Idempotent.
    """
    global _ENABLED
    if _ENABLED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", force=True)(_load_full)
    _ENABLED = True
