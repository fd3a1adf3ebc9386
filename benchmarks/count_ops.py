"""How many ATen ops one call of each built-in transform runs (draws and apply together).

Where each op is a kernel launch (on a GPU) the count, not the bytes, sets the time of a call on
small and medium batches: ``bench_transforms.py --device cuda`` shows a copy of a 786 KB batch
taking as long as one of 25 MB. The count is taken with a ``TorchDispatchMode`` on the second
call (the first fills per-geometry tables); view ops, which launch nothing, are listed apart.

On the CPU the transforms take CPU-only paths; ``--path cuda`` (the default there) marks the
input ``requires_grad``, which sends every transform down the path CUDA inputs take (the same
ATen ops; the CPU shortcuts are skipped for grad as for other devices). ``--device cuda``
counts on the GPU itself.

Usage::

    python benchmarks/count_ops.py [--device cpu|cuda] [--path cuda|cpu] [--shape 64,3,32,32]
"""

from __future__ import annotations

import argparse
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nda_plugins import transforms as T

BUILTINS = ["jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise"]
#: ops that make a view of existing storage: no kernel is launched for them
VIEW_OPS = {"view", "_unsafe_view", "unsqueeze", "squeeze", "expand", "select", "slice", "permute", "as_strided",
            "t", "transpose", "reshape", "alias", "detach", "unbind", "split", "unfold", "narrow", "movedim"}


class _Record(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def count(name: str, x: torch.Tensor, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(ops that compute, view ops)`` of one call of transform ``name`` on ``x``."""
    t = T.build(name)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    t(x, generator=gen)  # first call: per-geometry tables
    with _Record() as rec:
        t(x, generator=gen)
    computing = [op for op in rec.ops if op not in VIEW_OPS]
    return computing, [op for op in rec.ops if op in VIEW_OPS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--path", default=None, choices=["cpu", "cuda"],
                        help="on --device cpu: the path to count (default cuda, see the docstring)")
    parser.add_argument("--shape", default="64,3,32,32")
    args = parser.parse_args(argv)
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError:
        parser.error(f"--shape must be comma-separated integers such as 64,3,32,32, got {args.shape!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    path = args.path or "cuda"
    if args.device == "cuda" and path != "cuda":
        parser.error("--path cpu counts the CPU paths: use it with --device cpu")
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)).to(args.device)
    if args.device == "cpu" and path == "cuda":
        x.requires_grad_()
    print(f"ops per call, {tuple(shape)} float32 on {args.device}, {path} path, torch {torch.__version__}")
    print("| transform | ops | views | ops in order |")
    print("| --- | --- | --- | --- |")
    for name in BUILTINS:
        computing, views = count(name, x)
        print(f"| {name} | {len(computing)} | {len(views)} | {', '.join(computing)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
