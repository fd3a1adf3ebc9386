"""Workarounds for mmengine 0.10.7 on current torch, in one place.

* Resume on torch >= 2.6: mmengine's loader calls ``torch.load`` without ``weights_only``, which
  now defaults to ``True`` and refuses the checkpoint's meta (numpy, ``HistoryBuffer``).
  :func:`install_checkpoint_loader` registers a loader for local paths that passes
  ``weights_only=False`` (only load checkpoints you trust).
* CPU distributed: mmengine's ``MMDistributedDataParallel`` always passes
  ``device_ids=[current cuda device]``. :class:`CPUDistributedDataParallel` (registered as
  ``nda_plugins.CPUDistributedDataParallel``) drops ``device_ids`` on CPU, and
  :func:`init_cpu_distributed` starts the ``gloo`` process group before the Runner.
* Models with their own ``train_step`` (several optimizers, e.g. COP-Gen's navigator/estimator
  minimax): mmengine's DDP wrapper replaces the model's ``train_step`` by its single-loss one.
  :class:`CPUDistributedDataParallel` calls the model's own ``train_step`` instead and averages
  the gradients over the ranks just before each optimizer step (an optimizer step pre-hook,
  :func:`average_gradients`), so the replicas stay identical; :func:`replica_max_diff` checks it.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.model import BaseModel, MMDistributedDataParallel
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


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(params) -> None:
    """Replace each parameter's gradient by its mean over the ranks (no-op when not distributed).

    Parameters without a gradient count as zeros (and get one), so every rank makes the same
    collective calls. Gradients are reduced as one flat buffer per dtype.
    """
    if not _distributed():
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    world = dist.get_world_size()
    for dtype in sorted({p.grad.dtype for p in params}, key=str):
        grads = [p.grad for p in params if p.grad.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()


def _average_before_step(optimizer, args, kwargs) -> None:
    average_gradients(p for group in optimizer.param_groups for p in group["params"])


def install_gradient_averaging(optim_wrapper) -> None:
    """Average gradients over the ranks before every step of the wrapper's optimizer(s) (idempotent).

    Accepts an mmengine ``OptimWrapper``, an ``OptimWrapperDict`` or a torch optimizer.
    """
    if hasattr(optim_wrapper, "items") and callable(optim_wrapper.items):  # OptimWrapperDict
        for _, wrapper in optim_wrapper.items():
            install_gradient_averaging(wrapper)
        return
    optimizer = getattr(optim_wrapper, "optimizer", optim_wrapper)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optim_wrapper must be an OptimWrapper, OptimWrapperDict or Optimizer, got {type(optim_wrapper).__name__}")
    if not getattr(optimizer, "_nda_average_gradients", False):
        optimizer.register_step_pre_hook(_average_before_step)
        optimizer._nda_average_gradients = True


def _has_own_train_step(module) -> bool:
    return isinstance(module, BaseModel) and type(module).train_step is not BaseModel.train_step


@torch.no_grad()
def replica_max_diff(module, buffers: bool = False) -> float:
    """Largest difference of any parameter (and buffer, if ``buffers``) between ranks.

    ``0.0`` when not distributed. Buffers such as BatchNorm statistics are only kept equal by
    broadcasts from rank 0, so they may differ between ranks after a plain DDP step.
    """
    if not isinstance(buffers, bool):
        raise TypeError(f"buffers must be a bool, got {type(buffers).__name__}")
    module = getattr(module, "module", module)
    tensors = [*module.parameters(), *(module.buffers() if buffers else ())]
    tensors = [t for t in tensors if t.is_floating_point()]
    if not _distributed() or not tensors:
        return 0.0
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max())


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that also works on CPU (no ``device_ids`` there).

    Use as ``model_wrapper_cfg=dict(type='nda_plugins.CPUDistributedDataParallel')``. A model
    with its own ``train_step`` (e.g. several optimizers) keeps it: the wrapper calls it and
    averages the gradients over the ranks before each optimizer step
    (:func:`install_gradient_averaging`); other models train through DDP as usual.
    """

    def __init__(self, module, detect_anomalous_params: bool = False, **kwargs) -> None:
        if next(module.parameters()).device.type == "cpu":
            kwargs.pop("device_ids", None)
            kwargs.pop("output_device", None)
        super().__init__(module=module, detect_anomalous_params=detect_anomalous_params, **kwargs)

    def train_step(self, data, optim_wrapper):
        if not _has_own_train_step(self.module):
            return super().train_step(data, optim_wrapper)
        install_gradient_averaging(optim_wrapper)
        log_vars = self.module.train_step(data, optim_wrapper)
        if self.broadcast_buffers:  # e.g. BatchNorm statistics: rank 0's, as DDP does
            with torch.no_grad():
                for buf in self.module.buffers():
                    dist.broadcast(buf, src=0)
        return log_vars


install_checkpoint_loader()

__all__ = [
    "CPUDistributedDataParallel",
    "average_gradients",
    "enable_full_checkpoint_loading",
    "init_cpu_distributed",
    "install_checkpoint_loader",
    "install_gradient_averaging",
    "replica_max_diff",
]


def enable_full_checkpoint_loading() -> None:
    """Alias of :func:`install_checkpoint_loader` (the name the COP-Gen launcher uses)."""
    install_checkpoint_loader()
