"""nda_plugins._dist.finish_distributed: closes an open process group, and is a no-op otherwise."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist

from nda_plugins._dist import finish_distributed


def test_closes_an_open_group_and_is_a_no_op_without_one():
    finish_distributed()  # nothing open: nothing happens
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://localhost:{port}", rank=0, world_size=1)
    try:
        t = torch.ones(1)
        dist.all_reduce(t)
        assert dist.is_initialized()
        finish_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_objects_in_cycles_that_hold_the_group_go_before_it_closes():
    """A DDP wrapper left in a reference cycle (as a training runner leaves it) keeps the group
    alive; finish_distributed collects it before closing the group, with automatic collection
    off so that only finish_distributed can have done it."""
    import gc
    import weakref

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://localhost:{port}", rank=0, world_size=1)
    enabled = gc.isenabled()
    gc.disable()
    try:
        holder = {"ddp": torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))}
        holder["self"] = holder  # a cycle: only the cyclic collector frees it
        alive = weakref.ref(holder["ddp"])
        del holder
        assert alive() is not None
        finish_distributed()
        assert alive() is None and not dist.is_initialized()
    finally:
        if enabled:
            gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()
