"""Workarounds for mmengine 0.10.7 on current torch, in one place.

* Resume on torch >= 2.6: mmengine's loader calls ``torch.load`` without ``weights_only``, which
  now defaults to ``True`` and refuses the checkpoint's meta (numpy, ``HistoryBuffer``).
  :func:`install_checkpoint_loader` registers a loader for local paths that passes
  ``weights_only=False`` (only load checkpoints you trust).
* CPU distributed: mmengine's ``MMDistributedDataParallel`` always passes
  ``device_ids=[current cuda device]``. :class:`CPUDistributedDataParallel` (registered as
  ``nda_plugins.CPUDistributedDataParallel``) drops ``device_ids`` on CPU, and
  :func:`init_cpu_distributed` starts the ``gloo`` process group before the Runner.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.runner import CheckpointLoader

from nda_plugins.registry import MODEL_WRAPPERS

_INSTALLED = False


def _load_local(filename: str, map_location=None, logger=None):
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"checkpoint {filename!r} is not a file")
    return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_loader() -> None:
    """Make mmengine's ``load_checkpoint``/resume read local checkpoints on torch >= 2.6 (idempotent)."""
    global _INSTALLED
    if not _INSTALLED:
        CheckpointLoader.register_scheme(prefixes="", loader=_load_local, force=True)
        _INSTALLED = True


def init_cpu_distributed(backend: str = "gloo") -> bool:
    """Start the process group from torchrun's environment if there is one and none is started.

    Returns:
        ``True`` when running distributed (world size > 1) after the call.
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str like 'gloo', got {type(backend).__name__}")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also works on CPU (no ``device_ids`` there).

    Use as ``model_wrapper_cfg=dict(type='nda_plugins.CPUDistributedDataParallel')``.
    """

    def __init__(self, module, detect_anomalous_params: bool = False, **kwargs) -> None:
        if next(module.parameters()).device.type == "cpu":
            kwargs.pop("device_ids", None)
            kwargs.pop("output_device", None)
        super().__init__(module=module, detect_anomalous_params=detect_anomalous_params, **kwargs)


install_checkpoint_loader()

__all__ = ["CPUDistributedDataParallel", "enable_full_checkpoint_loading", "init_cpu_distributed", "install_checkpoint_loader"]


def enable_full_checkpoint_loading() -> None:
    """Alias of :func:`install_checkpoint_loader` (the name the COP-Gen launcher uses)."""
    install_checkpoint_loader()
