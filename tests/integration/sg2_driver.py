"""Run a tiny StyleGAN2-ADA-style training on CPU from inside a patched checkout.

Usage (cwd = the patched checkout): ``python sg2_driver.py DATA OUTDIR [--resume PKL] [flags]``.
Goes through upstream's own ``setup_training_loop_kwargs`` (so the ``--nda*`` flags take the
patched path), then shrinks the networks so a few ticks take seconds on a CPU.
"""

import json
import os
import sys

sys.path.insert(0, os.getcwd())

import train  # noqa: E402  (upstream, patched)
from training import training_loop  # noqa: E402


def _small_grid(original):
    # Upstream renders a grid of up to 32x32 images at start; 4x2 keeps the test fast.
    def grid(training_set, random_seed=0):
        _, images, labels = original(training_set=training_set, random_seed=random_seed)
        return (4, 2), images[:8], labels[:8]
    return grid


def main(argv):
    data, outdir = argv[0], argv[1]
    kwargs = json.loads(argv[2]) if len(argv) > 2 else {}
    steps = kwargs.pop("steps", 12)
    steps_per_tick = kwargs.pop("steps_per_tick", 4)
    batch = kwargs.pop("batch", 4)
    overrides = {k: kwargs.pop(k) for k in ("ada_kimg", "ada_target") if k in kwargs}
    desc, args = train.setup_training_loop_kwargs(
        data=data, gpus=1, batch=batch, kimg=1, metrics=[], cfg="cifar", fp32=True, workers=1, snap=1, **kwargs)
    for net in (args.G_kwargs.synthesis_kwargs, args.D_kwargs):
        net.channel_base, net.channel_max = 128, 16
    args.G_kwargs.z_dim = args.G_kwargs.w_dim = 16
    for head in ("DHead_kwargs", "GHead_kwargs"):  # InsGen: contrastive heads on D's 4x4 features
        if args.get(head):
            args[head].inplanes = 16
    args.D_kwargs.epilogue_kwargs.mbstd_group_size = 2
    args.total_kimg = steps * batch / 1000
    args.kimg_per_tick = steps_per_tick * batch / 1000
    args.image_snapshot_ticks = None
    if "ada_kimg" in overrides:  # make ADA's p move within a few steps
        args.ada_kimg = overrides["ada_kimg"]
    if "ada_target" in overrides:
        args.ada_target = overrides["ada_target"]
    training_loop.setup_snapshot_image_grid = _small_grid(training_loop.setup_snapshot_image_grid)
    args.run_dir = os.path.join(outdir, desc)
    os.makedirs(args.run_dir, exist_ok=True)
    with open(os.path.join(args.run_dir, "training_options.json"), "wt") as f:
        json.dump(args, f, indent=2)
    training_loop.training_loop(rank=0, **args)
    print("RUN_DIR", args.run_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
