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
