"""Train DPC (with or without NDA) with mmengine's Runner; CPU or GPU, single process or torchrun.

Examples:
    python -m nda_plugins.adapters.mmengine_dpc.train dpc_nda_moving_shapes --work-dir runs/nda
    torchrun --nproc_per_node=2 -m nda_plugins.adapters.mmengine_dpc.train dpc_nda_moving_shapes \
        --launcher pytorch --work-dir runs/nda2
    python -m nda_plugins.adapters.mmengine_dpc.train dpc_nda_moving_shapes --work-dir runs/nda --resume
"""

from __future__ import annotations

import argparse
import os
import sys

from nda_plugins._dist import finish_distributed


def build_runner(config: str, work_dir: str | None = None, launcher: str = "none", resume: bool = False,
                 max_epochs: int | None = None, video_root: str | None = None, seed: int | None = None,
                 experiment_name: str | None = None):
    """The configured ``Runner`` (config: a shipped name or a path to a config file).

    ``seed`` replaces the config's training seed and, when the model has NDA, its negatives' seed.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    from nda_plugins.adapters.mmengine_dpc import config_path
    from nda_plugins.mmengine import compat

    compat.install_checkpoint_loader()
    if launcher not in ("none", "pytorch"):
        raise ValueError(f"launcher must be 'none' or 'pytorch', got {launcher!r}")
    if launcher == "pytorch" and not compat.init_cpu_distributed("gloo" if not _cuda() else "nccl"):
        raise ValueError("launcher='pytorch' needs torchrun's environment (RANK, WORLD_SIZE)")
    cfg = Config.fromfile(config if os.path.isfile(config) else config_path(config))
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    if max_epochs is not None:
        cfg.train_cfg.max_epochs = max_epochs
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        cfg.randomness = dict(seed=seed)
        if cfg.model.get("nda"):
            cfg.model.nda.seed = seed
    if experiment_name is not None:
        cfg.experiment_name = experiment_name
    if video_root is not None:
        cfg.train_dataloader.dataset = dict(type="nda_plugins.VideoFolder", root=video_root, frames=8)
    cfg.resume = bool(resume)
    return Runner.from_cfg(cfg)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="shipped config name (dpc_moving_shapes, dpc_nda_moving_shapes) or a path")
    parser.add_argument("--work-dir")
    parser.add_argument("--launcher", default="none", choices=["none", "pytorch"])
    parser.add_argument("--resume", action="store_true", help="resume from the work dir's last checkpoint")
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--seed", type=int, help="training seed (also the NDA negatives' seed)")
    parser.add_argument("--video-root", help="folder of <class>/<clip>.pt clips instead of the embedded videos")
    args = parser.parse_args(argv)
    try:
        runner = build_runner(args.config, args.work_dir, args.launcher, args.resume, args.max_epochs, args.video_root,
                              seed=args.seed)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    try:
        runner.train()
    finally:
        del runner  # with DDP's reducer, which holds the process group (see finish_distributed)
        finish_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
