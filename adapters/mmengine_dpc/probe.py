"""Action-classification probe: DPC with and without NDA at equal budget, linear top-1 on frozen features.

Trains ``dpc_moving_shapes`` and ``dpc_nda_moving_shapes`` for the same epochs and seed, then fits
a linear classifier on the pooled context features of a labelled train split and reports top-1 on
a held-out split (a different dataset seed). Writes ``probe.json``, ``probe.md`` and ``probe.png``.

    python -m nda_plugins.adapters.mmengine_dpc.probe --out runs/probe --epochs 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys

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


def run(out: str, epochs: int = 4, test_clips: int = 96, seed: int = 0) -> dict:
    from nda_plugins.adapters.mmengine_dpc.train import build_runner
    from nda_plugins.mmengine.video_data import MovingShapesVideo

    os.makedirs(out, exist_ok=True)
    results = {"epochs": epochs, "seed": seed, "rows": []}
    for name in ("dpc_moving_shapes", "dpc_nda_moving_shapes"):
        runner = build_runner(name, work_dir=os.path.join(out, name), max_epochs=epochs)
        runner.train()
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        train_set = runner.train_dataloader.dataset
        test_set = MovingShapesVideo(num_clips=test_clips, frames=train_set.frames, size=train_set.size,
                                     seed=train_set.seed + 1, num_classes=train_set.num_classes)
        top1 = linear_probe(features(model, train_set), features(model, test_set), train_set.num_classes, seed=seed)
        results["rows"].append({"config": name, "nda": model.nda_session is not None, "top1": top1})
    with open(os.path.join(out, "probe.json"), "w") as f:
        json.dump(results, f, indent=2)
    table = ["| config | NDA | linear top-1 |", "|---|---|---|"]
    table += [f"| {r['config']} | {'yes' if r['nda'] else 'no'} | {100 * r['top1']:.1f}% |" for r in results["rows"]]
    with open(os.path.join(out, "probe.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 3))
        ax.bar([r["config"].replace("_moving_shapes", "") for r in results["rows"]],
               [100 * r["top1"] for r in results["rows"]])
        ax.set_ylabel("linear top-1 (%)")
        ax.set_title(f"moving shapes, {epochs} epochs")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "probe.png"))
        plt.close(fig)
    except ImportError:
        pass
    print("\n".join(table))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/dpc_probe")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the linear probe")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    run(args.out, args.epochs, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
