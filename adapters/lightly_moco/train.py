"""MoCo-v2 with NDA negatives on lightly: train, resume, probe, compare with the baseline.

Examples::

    # baseline and NDA (jigsaw keys) at equal budget from the same seed, then both probes and
    # the Fig. 9 check, written as results.json, results.md and fig9.png
    python -m nda_plugins.adapters.lightly_moco.train --compare --nda jigsaw --steps 400 --out runs/moco

    # one NDA run on an image folder (one sub-folder per class), two CPU processes
    torchrun --nproc_per_node=2 -m nda_plugins.adapters.lightly_moco.train --data DIR --nda jigsaw+stitch

    # continue a run (same settings; a larger --steps is refused: schedules depend on it)
    python -m nda_plugins.adapters.lightly_moco.train --nda jigsaw --resume runs/moco/checkpoint.pt

Without ``--data`` the embedded procedural ten-class dataset is used
(:mod:`nda_plugins.demo.shape_classes`). Under ``torchrun`` the process group uses gloo on CPU and
NCCL on GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from nda_plugins._dist import finish_distributed

from .data import embedded, image_folder
from .training import MoCoTrainer, TrainConfig

__all__ = ["build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m nda_plugins.adapters.lightly_moco.train",
        description="MoCo-v2 on lightly with NDA views of each query as extra negatives.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None, help="image folder (one sub-folder per class; "
                      "train/ and val/ sub-folders if present); default: the embedded procedural classes")
    data.add_argument("--image-size", type=int, default=32, help="images are resized to this side (default 32)")
    data.add_argument("--train-per-class", type=int, default=400, help="embedded data: training images per class")
    data.add_argument("--test-per-class", type=int, default=100, help="embedded data: probe test images per class")
    moco = p.add_argument_group("MoCo-v2")
    moco.add_argument("--steps", type=int, default=d.steps)
    moco.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size (all processes)")
    moco.add_argument("--queue", type=int, default=d.queue, help="memory bank (queue) length K")
    moco.add_argument("--temperature", type=float, default=d.temperature)
    moco.add_argument("--lr", type=float, default=d.lr)
    moco.add_argument("--weight-decay", type=float, default=d.weight_decay)
    moco.add_argument("--key-momentum", type=float, default=d.key_momentum,
                      help="momentum-encoder EMA at step 0, cosine-increased to 1")
    moco.add_argument("--width", type=int, default=d.width)
    moco.add_argument("--hidden-dim", type=int, default=d.hidden_dim)
    moco.add_argument("--out-dim", type=int, default=d.out_dim)
    moco.add_argument("--seed", type=int, default=d.seed)
    nda = p.add_argument_group("NDA")
    nda.add_argument("--nda", default=None, metavar="SPEC", help="NDA transform spec(s), e.g. 'jigsaw', "
                     "'jigsaw:grid=3', or a mix drawn per batch 'jigsaw+stitch+cutout'")
    nda.add_argument("--nda-weight", type=float, default=d.nda_weight, help="w in [0, 1) on the NDA keys' terms")
    nda.add_argument("--nda-schedule", default=d.nda_schedule, help="schedule of w (nda_plugins.schedules spec)")
    nda.add_argument("--nda-views", type=int, default=d.nda_views, help="NDA views per query")
    run_ = p.add_argument_group("run")
    run_.add_argument("--compare", action="store_true",
                      help="train the baseline (no NDA) and the --nda run with the same seed and budget, and compare")
    run_.add_argument("--out", type=Path, default=Path("nda-runs/lightly-moco"), help="output folder")
    run_.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from (writes next to it)")
    run_.add_argument("--stop-at", type=int, default=None,
                      help="stop (with a checkpoint) after this step, to --resume later; no evaluation then")
    run_.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (0: end only)")
    run_.add_argument("--probe-steps", type=int, default=300, help="linear-probe optimisation steps")
    run_.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    run_.add_argument("--no-progress", action="store_true", help="no progress bars")
    run_.add_argument("--no-eval", action="store_true", help="skip the probes and the Fig. 9 check")
    return p


def _config(args: argparse.Namespace, nda: str | None) -> TrainConfig:
    return TrainConfig(
        steps=args.steps, batch_size=args.batch_size, queue=args.queue, temperature=args.temperature, lr=args.lr,
        weight_decay=args.weight_decay, key_momentum=args.key_momentum, width=args.width,
        hidden_dim=args.hidden_dim, out_dim=args.out_dim, seed=args.seed, nda=nda, nda_weight=args.nda_weight,
        nda_schedule=args.nda_schedule, nda_views=args.nda_views,
    )


def _device(name: str) -> torch.device:
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
        return torch.device("cuda", local)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")


def _validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.compare and args.nda is None:
        parser.error("--compare needs --nda (the NDA run to compare with the baseline)")
    if args.compare and args.resume is not None:
        parser.error("--compare cannot --resume; resume each run on its own")
    if not 0.0 <= args.nda_weight < 1.0:
        parser.error(f"--nda-weight must be in [0, 1), got {args.nda_weight}")
    if args.checkpoint_every < 0:
        parser.error(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.stop_at is not None and not 1 <= args.stop_at <= args.steps:
        parser.error(f"--stop-at must be in [1, --steps={args.steps}], got {args.stop_at}")
    if args.stop_at is not None and args.compare:
        parser.error("--stop-at cannot be used with --compare")
    if args.probe_steps < 1:
        parser.error(f"--probe-steps must be >= 1, got {args.probe_steps}")
    if args.image_size < 8:
        parser.error(f"--image-size must be >= 8, got {args.image_size}")


def _run_dir(out: Path) -> Path:
    from nda_plugins.demo._output import new_run_dir

    return new_run_dir(out)


def _broadcast_path(path: Path | None) -> Path:
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [str(path) if path is not None else None]
        dist.broadcast_object_list(box, src=0)
        return Path(box[0])
    return path


def _train_one(args, data, config: TrainConfig, folder: Path, device, *, resume: Path | None, desc: str) -> dict[str, Any]:
    trainer = MoCoTrainer(data, config, device=device)
    if resume is not None:
        trainer.load(resume)
    start = trainer.step
    losses = trainer.train(until=args.stop_at, checkpoint=folder / "checkpoint.pt", checkpoint_every=args.checkpoint_every,
                           progress=not args.no_progress, desc=desc)
    result: dict[str, Any] = {"config": dataclasses.asdict(trainer.config), "start_step": start, "steps": trainer.step,
                              "losses": [round(v, 5) for v in losses]}
    if not args.no_eval and trainer.rank == 0 and trainer.step == config.steps:
        result["eval"] = trainer.evaluate(probe_steps=args.probe_steps, seed=args.seed)
    if trainer.rank == 0:
        from nda_plugins.demo._output import write_json

        write_json(folder / "metrics.json", result)
    return result


def _table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| run | kNN top-1 | linear top-1 | jigsaw distance, features | jigsaw distance, embedding | final loss |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        e = r["eval"]
        f, m = e["jigsaw_distance"]["features"], e["jigsaw_distance"]["embedding"]
        final = sum(r["losses"][-20:]) / max(1, len(r["losses"][-20:]))
        lines.append(f"| {name} | {e['knn_top1']:.3f} | {e['linear_top1']:.3f} | {f['mean']:.4f} ± {f['std']:.4f} "
                     f"| {m['mean']:.3f} ± {m['std']:.3f} | {final:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(path: Path, rows: dict[str, dict[str, Any]]) -> bool:
    from nda_plugins.demo._output import pyplot

    plt = pyplot()
    if plt is None:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, space in zip(axes, ("features", "embedding")):
        for name, r in rows.items():
            ax.hist(r["eval"]["jigsaw_distances"][space], bins=40, alpha=0.55, label=name, density=True)
        ax.set_xlabel(f"cosine distance f(x) vs f(jigsaw(x)), {space}")
        ax.set_ylabel("density")
        ax.legend()
    fig.suptitle("Fig. 9 check: MoCo-v2 with and without NDA (test images)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run(argv: list[str] | None = None) -> Path:
    """Parse ``argv``, train (and compare), and return the output folder."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(args, parser)
    try:
        device = _device(args.device)
        config = _config(args, args.nda)
        base_config = _config(args, None) if args.compare else None
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        try:
            if args.data is not None:
                data = image_folder(args.data, size=args.image_size, seed=args.seed)
            else:
                data = embedded(args.train_per_class, args.test_per_class, size=args.image_size, seed=args.seed)
        except (TypeError, ValueError) as exc:
            parser.error(str(exc))
        if args.resume is not None:
            folder = args.resume.parent
        else:
            folder = _broadcast_path(_run_dir(args.out) if rank == 0 else None)
        try:
            if not args.compare:
                result = _train_one(args, data, config, folder, device, resume=args.resume,
                                    desc="moco+nda" if args.nda else "moco")
                if rank == 0 and "eval" in result:
                    (folder / "results.md").write_text(_table({"nda" if args.nda else "baseline": result}))
            else:
                rows = {}
                for name, cfg in (("baseline", base_config), (f"nda ({args.nda})", config)):
                    sub = folder / ("baseline" if cfg.nda is None else "nda")
                    if rank == 0:
                        sub.mkdir(exist_ok=True)
                    if distributed:
                        dist.barrier()
                    rows[name] = _train_one(args, data, cfg, sub, device, resume=None, desc=name)
                if rank == 0 and not args.no_eval:
                    _write_comparison(folder, rows, data.source)
        except ValueError as exc:  # a refused checkpoint or setting: one line, no traceback
            parser.error(str(exc))
    finally:
        finish_distributed()
    if rank == 0:
        print(f"results in {folder}")
    return folder


def _write_comparison(folder: Path, rows: dict[str, dict[str, Any]], source: str) -> None:
    from nda_plugins.demo._output import write_json

    summary = {
        "data": source,
        "runs": {name: {"config": r["config"], "knn_top1": r["eval"]["knn_top1"],
                        "linear_top1": r["eval"]["linear_top1"], "jigsaw_distance": r["eval"]["jigsaw_distance"],
                        "final_loss": sum(r["losses"][-20:]) / max(1, len(r["losses"][-20:]))}
                 for name, r in rows.items()},
    }
    write_json(folder / "results.json", summary)
    table = _table(rows)
    (folder / "results.md").write_text(table)
    plotted = _plot(folder / "fig9.png", rows)
    print(table, end="")
    if not plotted:
        from nda_plugins.demo._output import MATPLOTLIB_HINT

        print(MATPLOTLIB_HINT, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
