"""Numerosity containment (NDA paper, Sinha et al. 2021, appendix A; Fig. 6a).

A GAN trained on images with exactly ``k`` dots tends to generate images with *around* ``k`` dots.
NDA tells the discriminator that images with ``k +- 1`` and ``k +- 2`` dots are not real, which
should concentrate the generator's count distribution on ``k``.

The demo trains the same small GAN twice per seed -- baseline and NDA, same data, same
initialisation, same random stream -- counts the dots of generated samples with
:func:`~nda_plugins.demo.images.count_components`, and reports the distribution of counts and the
share with exactly ``k`` dots. Negatives come from the library: ``transforms.build("source",
source=<images with other counts>)``, and the objective is
:func:`nda_plugins.losses.discriminator_loss` with ``nda_weight``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .. import transforms
from . import _output, gan
from .images import count_components, dots, max_dots, other_counts

__all__ = ["NumerosityConfig", "QUICK", "format_table", "plot", "run"]

RUNS = ("baseline", "nda")
LABELS = {"baseline": "baseline", "nda": "NDA"}
#: Samples shown in each grid (4 rows of 8).
GRID = 32


@dataclass
class NumerosityConfig:
    """Settings of ``nda demo`` (numerosity).

    The first group has CLI flags of the same names; the GAN recipe below it (loss, optimiser,
    minibatch standard deviation) is fixed by the demo and recorded in ``results.json``.

    Attributes:
        k: the dot count of every training image.
        seeds: one baseline + one NDA training per seed.
        steps: training steps per run.
        batch_size: batch size.
        width: base channel width of G and D.
        nda_weight: ``w`` for the NDA run (share of negatives on the fake side).
        n_train: training images per seed (drawn once, reused by both runs).
        n_negatives: negative images (other counts) per seed.
        n_eval: generated samples counted per run.
        offsets: count offsets for negatives (``k + offset``).
        size: image side (a multiple of 8 and a power of two).
        kind: loss kind of :mod:`nda_plugins.losses`.
        lr: Adam learning rate of G (see :class:`~nda_plugins.demo.gan.TrainConfig`).
        lr_d_scale: D's learning rate over G's.
        betas: Adam betas.
        d_steps: D updates per G update.
        minibatch_std: D sees the batch's feature spread (guards G against collapsing).
    """

    k: int = 6
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    batch_size: int = 64
    width: int = 16
    nda_weight: float = 0.5
    n_train: int = 4096
    n_negatives: int = 4096
    n_eval: int = 1000
    offsets: tuple[int, ...] = (-2, -1, 1, 2)
    size: int = 32
    kind: str = "logistic"
    lr: float = 1e-3
    lr_d_scale: float = 1.0
    betas: tuple[float, float] = (0.5, 0.9)
    d_steps: int = 1
    minibatch_std: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the setting (as its CLI flag) when a value is out of range."""
        if not 1 <= self.k <= max_dots(self.size) - 1:
            raise ValueError(f"--k: expected 1..{max_dots(self.size) - 1} for {self.size}x{self.size} images, got {self.k}")
        if not self.seeds:
            raise ValueError("--seeds: expected at least one seed, got none")
        for name in ("steps", "batch_size", "width", "n_train", "n_negatives", "n_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(self, name)}")
        if not 0.0 < self.nda_weight < 1.0:
            raise ValueError(f"--nda-weight: expected a number in (0, 1), got {self.nda_weight}")


#: The ``--quick`` settings (tests, smoke runs): seconds, not minutes; the numbers mean nothing.
QUICK = dict(seeds=(0,), steps=40, batch_size=32, width=8, n_train=256, n_negatives=256, n_eval=256)


def _histogram(counts: torch.Tensor) -> dict[str, int]:
    values = torch.bincount(counts)
    return {str(i): int(v) for i, v in enumerate(values.tolist()) if v}


def run(config: NumerosityConfig, out_dir: Path, *, progress: Callable[[int], None] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate and write every output into ``out_dir`` (which must exist).

    Returns:
        The result dictionary also written to ``out_dir / "results.json"``.
    """
    config.validate()
    started = time.perf_counter()
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    all_counts: dict[str, list[torch.Tensor]] = {name: [] for name in RUNS}
    grids: dict[str, tuple[torch.Tensor, str]] = {}  # file stem -> (images, title)
    train_cfg = dict(steps=config.steps, batch_size=config.batch_size, width=config.width,
                     size=config.size, kind=config.kind, lr=config.lr, lr_d_scale=config.lr_d_scale,
                     betas=config.betas, d_steps=config.d_steps, minibatch_std=config.minibatch_std)
    for seed in config.seeds:
        data_gen = torch.Generator().manual_seed(10_000 + seed)
        real = dots(torch.full((config.n_train,), config.k), size=config.size, generator=data_gen)
        neg_counts = other_counts(config.k, config.n_negatives, offsets=config.offsets, size=config.size,
                                  generator=data_gen)
        negatives = transforms.build("source", source=dots(neg_counts, size=config.size, generator=data_gen))
        if seed == config.seeds[0]:
            grids["samples_real"] = (real[:GRID], f"Training images (seed {seed}): every one has k = {config.k} dots")
            grids["samples_negatives"] = (
                negatives(real[:GRID], generator=torch.Generator().manual_seed(seed)),
                f"NDA negatives (seed {seed}): {', '.join(str(config.k + o) for o in config.offsets)} dots, never {config.k}")
        for name in RUNS:
            weight = config.nda_weight if name == "nda" else 0.0
            G, _ = gan.train_gan(real, negatives, gan.TrainConfig(nda_weight=weight, **train_cfg),
                                 seed=seed, progress=progress)
            samples = gan.sample(G, config.n_eval, seed=20_000 + seed)
            counts = count_components(samples)
            all_counts[name].append(counts)
            share = float((counts == config.k).float().mean())
            per_seed[name].append({
                "seed": seed,
                "share_k": share,
                "mean_abs_error": float((counts - config.k).abs().float().mean()),
                "counts": _histogram(counts),
            })
            grids[f"samples_{name}_seed{seed}"] = (
                samples[:GRID], f"{LABELS[name]}, seed {seed}: {share:.0%} of {config.n_eval} samples have "
                                f"exactly {config.k} dots (first {min(GRID, config.n_eval)} shown)")

    runs: dict[str, Any] = {}
    for name in RUNS:
        counts = torch.cat(all_counts[name])
        shares = [entry["share_k"] for entry in per_seed[name]]
        errors = [entry["mean_abs_error"] for entry in per_seed[name]]
        runs[name] = {
            "nda_weight": config.nda_weight if name == "nda" else 0.0,
            "n_samples": int(counts.numel()),
            "counts": _histogram(counts),
            "share_k": float((counts == config.k).float().mean()),
            "share_k_per_seed": shares,
            "share_k_mean": statistics.fmean(shares),
            "share_k_std": _output.spread(shares),
            "mean_abs_error": float((counts - config.k).abs().float().mean()),
            "mean_abs_error_per_seed": errors,
            "mean_abs_error_std": _output.spread(errors),
            "per_seed": per_seed[name],
        }
    result = {
        "demo": "numerosity",
        "k": config.k,
        "seeds": list(config.seeds),
        "settings": {key: (list(v) if isinstance(v, tuple) else v) for key, v in asdict(config).items()},
        "runs": runs,
        "seconds": 0.0,
        "files": {"json": "results.json", "table": "table.txt", "plot": "histogram.png",
                  "grids": [f"{stem}.png" for stem in grids]},
    }
    labelled = True
    for stem, (images, title) in grids.items():
        counts = count_components(images).tolist()
        captions = [f"{c} dot{'s' if c != 1 else ''}" for c in counts]
        colours = ["tab:green" if c == config.k else "tab:red" for c in counts]
        if not _output.save_labelled_grid(out_dir / f"{stem}.png", images, captions=captions,
                                          caption_colours=colours, title=title):
            labelled = False
            _output.save_grid(out_dir / f"{stem}.png", images)
    table = format_table(result)
    (out_dir / "table.txt").write_text(table + "\n")
    if not plot(result, out_dir / "histogram.png"):
        labelled = False
        result["files"]["plot"] = None
    if not labelled:
        log(_output.MATPLOTLIB_HINT + " (sample grids were written without dot counts)")
    result["seconds"] = round(time.perf_counter() - started, 1)
    _output.write_json(out_dir / "results.json", result)
    return result


def _count_columns(k: int) -> list[tuple[str, Callable[[int], bool]]]:
    cols: list[tuple[str, Callable[[int], bool]]] = [(f"<={k - 3}", lambda c: c <= k - 3)]
    for c0 in range(k - 2, k + 3):
        if c0 >= 0:
            cols.append((str(c0), lambda c, c0=c0: c == c0))
    cols.append((f">={k + 3}", lambda c: c >= k + 3))
    return cols


def format_table(result: dict[str, Any]) -> str:
    """The printed table: share of samples per dot count (all seeds pooled) and the share at k."""
    k = result["k"]
    cols = _count_columns(k)
    head = f"{'run':<9}" + "".join(f"{label:>7}" for label, _ in cols) + f"{'exactly k':>16}{'mean |c-k|':>12}"
    lines = [f"Dot counts of generated samples, k = {k}; seeds {result['seeds']}, "
             f"{result['runs']['baseline']['n_samples']} samples per run (share of samples per count)",
             head, "-" * len(head)]
    for name in RUNS:
        entry = result["runs"][name]
        n = entry["n_samples"]
        hist = {int(c): v for c, v in entry["counts"].items()}
        cells = "".join(f"{sum(v for c, v in hist.items() if test(c)) / n:>7.3f}" for _, test in cols)
        share = f"{entry['share_k']:.3f} ± {entry['share_k_std']:.3f}"
        lines.append(f"{name:<9}{cells}{share:>16}{entry['mean_abs_error']:>12.2f}")
    lines.append("(± is the standard deviation of the per-seed share over seeds)")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """Histogram of dot counts, baseline vs NDA (like the NDA paper's Fig. 6a). False without matplotlib.

    Bars are the share of samples per count, all seeds pooled; the error bars are the standard
    deviation of that share over seeds. The legend sits outside the axes, right of the bars.
    """
    plt = _output.pyplot()
    if plt is None:
        return False
    k = result["k"]
    seeds = result["seeds"]
    top = max([k + 4] + [int(c) for name in RUNS for c in result["runs"][name]["counts"]])
    xs = list(range(0, top + 1))
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    peak = 0.0
    for offset, name, colour in ((-0.2, "baseline", "tab:gray"), (0.2, "nda", "tab:blue")):
        entry = result["runs"][name]
        n = entry["n_samples"]
        pooled = [entry["counts"].get(str(x), 0) / n for x in xs]
        per_seed = [[s["counts"].get(str(x), 0) / sum(s["counts"].values()) for x in xs] for s in entry["per_seed"]]
        spread = [_output.spread(col) for col in zip(*per_seed)]
        peak = max(peak, max(p + e for p, e in zip(pooled, spread)))
        label = (f"{LABELS[name]}" + (f" (w = {entry['nda_weight']:g})" if name == "nda" else "")
                 + f"\nexactly {k}: {entry['share_k_mean']:.1%} ± {entry['share_k_std']:.1%}"
                 + f"\nmean |c-k|: {entry['mean_abs_error']:.2f}")
        ax.bar([x + offset for x in xs], pooled, width=0.4, color=colour, label=label,
               yerr=spread if len(seeds) > 1 else None, capsize=2, error_kw={"linewidth": 0.8})
    ax.set_ylim(0, min(1.0, peak * 1.15 + 0.02))
    ax.axvline(k, color="black", linestyle=":", linewidth=1)
    ax.text(k, ax.get_ylim()[1] * 0.98, f" k = {k}\n (training count)", ha="left", va="top", fontsize=8)
    ax.set_xlabel("number of dots in a generated sample")
    ax.set_ylabel("share of samples")
    which = (f"seeds {', '.join(map(str, seeds))} pooled; error bars = std over seeds" if len(seeds) > 1
             else f"seed {seeds[0]}")
    ax.set_title(f"Numerosity: GAN trained on images with exactly k = {k} dots\n{which}", fontsize=10)
    ax.set_xticks(xs)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, labelspacing=1.2)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True
