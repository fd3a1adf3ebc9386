"""Action-classification probe: DPC with and without NDA at equal budget, linear top-1 on frozen features.

Trains ``dpc_moving_shapes`` and ``dpc_nda_moving_shapes`` for the same epochs and seed, then fits
a linear classifier on the pooled context features of a labelled train split and reports top-1 on
a held-out split (a different dataset seed). Writes ``probe.json``, ``probe.md`` and ``probe.png``.

    python -m nda_plugins.adapters.mmengine_dpc.probe --out runs/probe --epochs 4 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F


@torch.no_grad()
def features(model, dataset, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled DPC context features ``(N, D)`` and labels ``(N,)`` of a dataset (eval mode)."""
    model.eval()
    feats, labels = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([it["inputs"] for it in items])
        feats.append(model(x, mode="tensor"))
        labels.append(torch.stack([it["labels"] for it in items]))
    return torch.cat(feats), torch.cat(labels)


def linear_probe(train: tuple, test: tuple, num_classes: int, steps: int = 300, seed: int = 0) -> float:
    """Top-1 accuracy (in [0, 1]) of a linear classifier fit on standardised ``train`` features."""
    (xtr, ytr), (xte, yte) = train, test
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    torch.manual_seed(seed)
    clf = torch.nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(clf(xtr), ytr).backward()
        opt.step()
    with torch.no_grad():
        return (clf(xte).argmax(1) == yte).float().mean().item()


CONFIGS = ("dpc_moving_shapes", "dpc_nda_moving_shapes")


def run(out: str, epochs: int = 4, test_clips: int = 96, seeds: tuple[int, ...] = (0,),
        configs: tuple[str, ...] = CONFIGS, untrained: bool = True) -> dict:
    """Train every config for every seed (same epochs: equal budget), probe, write JSON/table/plot.

    The seed drives the model initialisation, the data order and the NDA negatives of a run and
    the linear probe's initialisation; both configs see the same seeds. With ``untrained``, the
    first config's model is also probed before any training (the random-feature reference).
    """
    from nda_plugins.adapters.mmengine_dpc.train import build_runner
    from nda_plugins.mmengine.video_data import MovingShapesVideo

    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of ints >= 0, got {seeds!r}")
    os.makedirs(out, exist_ok=True)
    results: dict = {"epochs": epochs, "seeds": list(seeds), "test_clips": test_clips, "runs": [], "summary": []}
    if not isinstance(untrained, bool):
        raise TypeError(f"untrained must be a bool, got {type(untrained).__name__}")
    jobs = [(c, True) for c in configs] + ([(configs[0], False)] if untrained else [])
    for seed in seeds:
        for config, train in jobs:
            name = os.path.splitext(os.path.basename(config))[0]  # a shipped name or a config file
            name = name if train else "untrained"
            work_dir = os.path.join(out, f"{name}_seed{seed}")
            start = time.perf_counter()
            runner = build_runner(config, work_dir=work_dir, max_epochs=epochs, seed=seed,
                                  experiment_name=f"probe_{name}_seed{seed}_{os.getpid()}")
            if train:
                runner.train()
            model = runner.model.module if hasattr(runner.model, "module") else runner.model
            train_set = runner.train_dataloader.dataset
            test_set = MovingShapesVideo(num_clips=test_clips, frames=train_set.frames, size=train_set.size,
                                         seed=train_set.seed + 1, num_classes=train_set.num_classes)
            results["num_classes"] = train_set.num_classes
            top1 = linear_probe(features(model, train_set), features(model, test_set), train_set.num_classes, seed=seed)
            results["runs"].append({"config": name, "nda": train and model.nda_session is not None, "seed": seed,
                                    "top1": top1, "seconds": round(time.perf_counter() - start, 1)})
    for name in dict.fromkeys(r["config"] for r in results["runs"]):
        rows = [r for r in results["runs"] if r["config"] == name]
        top1 = torch.tensor([r["top1"] for r in rows], dtype=torch.float64)
        results["summary"].append({
            "config": name, "nda": rows[0]["nda"], "n": len(rows), "mean_top1": float(top1.mean()),
            "std_top1": float(top1.std()) if len(rows) > 1 else 0.0,
            "min_top1": float(top1.min()), "max_top1": float(top1.max()),
        })
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = ["| config | NDA | seeds | linear top-1, mean ± std | per seed |", "|---|---|---|---|---|"]
    for row in results["summary"]:
        per_seed = ", ".join(f"{100 * r['top1']:.1f}" for r in results["runs"] if r["config"] == row["config"])
        table.append(f"| {row['config']} | {'yes' if row['nda'] else 'no'} | {row['n']} | "
                     f"{100 * row['mean_top1']:.1f} ± {100 * row['std_top1']:.1f}% | {per_seed} |")
    table.append(f"\n{epochs} epochs per trained run ('untrained': the same network before training), test split of {test_clips} held-out clips; chance = "
                 f"{100 / results['num_classes']:.1f}%.")
    with open(os.path.join(out, "probe.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    _plot(results, os.path.join(out, "probe.png"))
    print("\n".join(table))
    return results


def _plot(results: dict, path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for i, row in enumerate(results["summary"]):
        color = "tab:gray" if row["config"] == "untrained" else "tab:orange" if row["nda"] else "tab:blue"
        ax.bar(i, 100 * row["mean_top1"], color=color, alpha=0.6,
               yerr=100 * row["std_top1"], capsize=4)
        points = [100 * r["top1"] for r in results["runs"] if r["config"] == row["config"]]
        ax.scatter([i] * len(points), points, color="black", s=14, zorder=3)
    ax.set_xticks(range(len(results["summary"])))
    ax.set_xticklabels(["untrained" if r["config"] == "untrained" else "DPC + NDA" if r["nda"] else "DPC"
                        for r in results["summary"]])
    ax.set_ylabel("linear probe top-1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"moving shapes, {results['epochs']} epochs, {len(results['seeds'])} seed(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dpc_probe")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training and probe seeds (default: 0)")
    parser.add_argument("--test-clips", type=int, default=96)
    parser.add_argument("--no-untrained", action="store_true", help="skip the untrained-network reference row")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.test_clips < 1:
        parser.error(f"--test-clips must be >= 1, got {args.test_clips}")
    if any(s < 0 for s in args.seeds):
        parser.error(f"--seeds must be >= 0, got {args.seeds}")
    run(args.out, args.epochs, test_clips=args.test_clips, seeds=tuple(args.seeds), untrained=not args.no_untrained)
    return 0


if __name__ == "__main__":
    sys.exit(main())
