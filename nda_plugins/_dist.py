"""torch.distributed helpers shared by the training entry points."""

from __future__ import annotations

import gc

import torch


def finish_distributed() -> None:
    """Close torch.distributed's default process group, if one is open.

    Every entry point that may run under ``torchrun`` calls this when it ends, also on an error: a
    process that exits with the group still open can abort in the destructors of the group's
    threads ("terminate called without an active exception", exit status -6 under gloo), which
    torchrun then reports as a failed run. No barrier: on an error path a peer may be gone.

    Objects that hold the group and sit in reference cycles (a training loop's runner, a
    ``DistributedDataParallel`` wrapper and its reducer) are collected first, so that the
    group's last reference goes now, while the interpreter is whole, and not in the middle of
    its shutdown. Callers drop their own references (``del runner``) before calling this.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
