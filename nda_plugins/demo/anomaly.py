"""Anomaly detection with the discriminator (NDA paper, Sinha et al. 2021, section 5.3; Table 5).

A GAN is trained on procedural in-distribution images (one large disc per image), with and without
jigsaw NDA (``transforms.build("jigsaw")`` as negatives, :func:`nda_plugins.losses.discriminator_loss`
with ``nda_weight``). Its discriminator's logit is then used as a "looks like training data" score:
held-out in-distribution images should score higher than out-of-distribution ones. The demo reports
the AUROC (:func:`nda_plugins.metrics.auroc`) for each out-of-distribution set:

* ``square``, ``ring`` -- other classes (other shapes, same colour and size statistics);
* ``noise`` -- held-out images plus Gaussian noise (library transform ``noise``, std 0.5);
* ``blur`` -- held-out images under a strong 7x7 Gaussian blur (sigma 2);
* ``jigsaw`` -- held-out images with shuffled 2x2 tiles (library transform ``jigsaw``);
* ``cutout`` -- held-out images with a mean-filled patch (library transform ``cutout``).

The jigsaw set is what the NDA run was trained to reject, so it is the easy case for NDA; the
others test whether that knowledge generalises.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .. import metrics, transforms
from . import _output, gan
from .images import shapes

__all__ = ["AnomalyConfig", "OOD_SETS", "QUICK", "blur", "format_table", "plot", "run"]

RUNS = ("baseline", "nda")
OOD_SETS = ("square", "ring", "noise", "blur", "jigsaw", "cutout")
#: Row labels of ``sets.png``: the in-distribution row, then one per OOD set.
SET_LABELS = ["disc\n(in-distribution,\nheld out)", "square", "ring", "Gaussian noise\nadded to discs",
              "blurred discs", "jigsaw 2x2\nof discs", "cutout\nof discs"]


@dataclass
class AnomalyConfig:
    """Settings of ``nda demo anomaly``; the CLI flags map one to one.

    Attributes:
        seeds: one baseline + one NDA training per seed.
        steps: training steps per run.
        batch_size: batch size.
        width: base channel width of G and D.
        nda_weight: ``w`` for the NDA run.
        transform: the NDA transform spec (default ``jigsaw:grid=2``).
        n_train: in-distribution training images per seed.
        n_eval: held-out images per set (in-distribution and each OOD set).
        kind: loss kind of :mod:`nda_plugins.losses`.
        size: image side (a power of two >= 8).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    batch_size: int = 64
    width: int = 16
    nda_weight: float = 0.5
    transform: str = "jigsaw:grid=2"
    n_train: int = 4096
    n_eval: int = 1000
    kind: str = "logistic"
    size: int = 32

    def validate(self) -> None:
        """Raise ValueError naming the setting (as its CLI flag) when a value is out of range."""
        if not self.seeds:
            raise ValueError("--seeds: expected at least one seed, got none")
        for name in ("steps", "batch_size", "width", "n_train", "n_eval"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {getattr(self, name)}")
        if not 0.0 < self.nda_weight < 1.0:
            raise ValueError(f"--nda-weight: expected a number in (0, 1), got {self.nda_weight}")
        name, _ = transforms.parse_spec(self.transform)
        if name not in transforms.available():
            raise ValueError(f"--transform: expected one of {transforms.available()}, got {self.transform!r}")
        try:  # the options too, before any folder is made or any step is trained
            transforms.build(self.transform)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--transform: {self.transform!r} is not a valid transform spec: {exc}") from None


#: The ``--quick`` settings (tests, smoke runs): seconds, not minutes; the numbers mean nothing.
QUICK = dict(seeds=(0,), steps=40, batch_size=32, width=8, n_train=256, n_eval=128)


def blur(x: torch.Tensor, *, sigma: float = 2.0, radius: int = 3) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images (reflect padding)."""
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ood_sets(held_out: torch.Tensor, *, size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The out-of-distribution sets, each ``(n, 3, size, size)``, built from ``held_out`` discs."""
    n = held_out.shape[0]
    return {
        "square": shapes(n, "square", size=size, generator=generator),
        "ring": shapes(n, "ring", size=size, generator=generator),
        "noise": transforms.build("noise", std=0.5)(held_out, generator=generator),
        "blur": blur(held_out),
        "jigsaw": transforms.build("jigsaw", grid=2)(held_out, generator=generator),
        "cutout": transforms.build("cutout")(held_out, generator=generator),
    }


def run(config: AnomalyConfig, out_dir: Path, *, progress: Callable[[int], None] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, score and write every output into ``out_dir`` (which must exist).

    Returns:
        The result dictionary also written to ``out_dir / "results.json"``.
    """
    config.validate()
    started = time.perf_counter()
    nda_transform = transforms.build(config.transform)
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    grids: dict[str, torch.Tensor] = {}
    train_cfg = dict(steps=config.steps, batch_size=config.batch_size, width=config.width,
                     size=config.size, kind=config.kind)
    for seed in config.seeds:
        data_gen = torch.Generator().manual_seed(30_000 + seed)
        real = shapes(config.n_train, "disc", size=config.size, generator=data_gen)
        held_out = shapes(config.n_eval, "disc", size=config.size, generator=data_gen)
        ood = ood_sets(held_out, size=config.size, generator=data_gen)
        if seed == config.seeds[0]:
            grids["in_distribution"] = held_out[:16]
            for name, images in ood.items():
                grids[f"ood_{name}"] = images[:16]
        for name in RUNS:
            weight = config.nda_weight if name == "nda" else 0.0
            G, D = gan.train_gan(real, nda_transform, gan.TrainConfig(nda_weight=weight, **train_cfg),
                                 seed=seed, progress=progress)
            s_in = gan.scores(D, held_out)
            per_seed[name].append({
                "seed": seed,
                "auroc": {o: float(metrics.auroc(s_in, gan.scores(D, x))) for o, x in ood.items()},
            })
            if seed == config.seeds[0]:
                grids[f"samples_{name}"] = gan.sample(G, 64, seed=40_000 + seed)

    runs: dict[str, Any] = {}
    for name in RUNS:
        values = {o: [entry["auroc"][o] for entry in per_seed[name]] for o in OOD_SETS}
        runs[name] = {
            "nda_weight": config.nda_weight if name == "nda" else 0.0,
            "auroc": {o: statistics.fmean(v) for o, v in values.items()},
            "auroc_std": {o: _output.spread(v) for o, v in values.items()},
            "mean_auroc": statistics.fmean(statistics.fmean(v) for v in values.values()),
            "per_seed": per_seed[name],
        }
    result = {
        "demo": "anomaly",
        "in_distribution": "disc",
        "ood_sets": list(OOD_SETS),
        "seeds": list(config.seeds),
        "settings": {key: (list(v) if isinstance(v, tuple) else v) for key, v in asdict(config).items()},
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
        "files": {"json": "results.json", "table": "table.txt", "plot": "auroc.png",
                  "grids": ["sets.png", "samples_baseline.png", "samples_nda.png"]},
    }
    # One row per set (in-distribution first), 8 examples each, each row labelled with its set.
    seed0 = config.seeds[0]
    sets = torch.cat([grids["in_distribution"][:8]] + [grids[f"ood_{o}"][:8] for o in OOD_SETS])
    labelled = _output.save_labelled_grid(
        out_dir / "sets.png", sets, row_labels=SET_LABELS,
        title=f"Scored sets (seed {seed0}): held-out training-like discs, then each out-of-distribution set")
    if not labelled:
        _output.save_grid(out_dir / "sets.png", sets)
    for name in RUNS:
        title = (f"{'NDA (' + config.transform + ' negatives)' if name == 'nda' else 'baseline'}: "
                 f"generated samples, seed {seed0}")
        if not _output.save_labelled_grid(out_dir / f"samples_{name}.png", grids[f"samples_{name}"], title=title):
            _output.save_grid(out_dir / f"samples_{name}.png", grids[f"samples_{name}"])
    (out_dir / "table.txt").write_text(format_table(result) + "\n")
    if not plot(result, out_dir / "auroc.png"):
        labelled = False
        result["files"]["plot"] = None
    if not labelled:
        log(_output.MATPLOTLIB_HINT + " (sets.png was written without row labels)")
    _output.write_json(out_dir / "results.json", result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The printed table: AUROC per OOD set (mean over seeds, ± std)."""
    head = f"{'OOD set':<10}" + "".join(f"{name:>16}" for name in RUNS)
    lines = [f"AUROC of D's score, held-out discs vs each OOD set; seeds {result['seeds']} "
             f"(0.5 = chance, 1 = perfect)", head, "-" * len(head)]
    for o in list(result["ood_sets"]) + ["mean"]:
        cells = ""
        for name in RUNS:
            entry = result["runs"][name]
            if o == "mean":
                cells += f"{entry['mean_auroc']:>16.3f}"
            else:
                cells += f"{entry['auroc'][o]:.3f} ± {entry['auroc_std'][o]:.3f}".rjust(16)
        lines.append(f"{o:<10}{cells}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """Grouped bars of AUROC per OOD set, baseline vs NDA. False without matplotlib."""
    plt = _output.pyplot()
    if plt is None:
        return False
    sets = list(result["ood_sets"])
    xs = range(len(sets))
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for offset, name, colour in ((-0.2, "baseline", "tab:gray"), (0.2, "nda", "tab:blue")):
        entry = result["runs"][name]
        ax.bar([x + offset for x in xs], [entry["auroc"][o] for o in sets], width=0.4, color=colour,
               yerr=[entry["auroc_std"][o] for o in sets], capsize=2,
               label=f"{name} (mean {entry['mean_auroc']:.3f})" if name == "baseline"
               else f"NDA, {result['settings']['transform']}\n(mean {entry['mean_auroc']:.3f})")
    ax.axhline(0.5, color="black", linestyle=":", linewidth=1, label="chance (AUROC 0.5)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(sets)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("out-of-distribution set")
    ax.set_ylabel("AUROC (in-distribution vs set)")
    seeds = result["seeds"]
    ax.set_title(f"Anomaly detection with the discriminator\n"
                 f"mean over seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                 f"{'; error bars = std over seeds' if len(seeds) > 1 else ''}", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return True
