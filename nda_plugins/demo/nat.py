"""``nda demo nat``: negative-aware training (NAT) of a classifier, and the 1-D NAT-GAN experiment.

Part 1, classifier. A small CNN is trained on the ten procedural classes of
:mod:`nda_plugins.demo.shape_classes`, once with plain cross-entropy (``baseline``) and once with
NAT (``nat``): every batch of positives is joined by as many negatives made from it by a library
transform (``jigsaw:grid=2`` by default), and :func:`nda_plugins.nat.nat_loss` trains the positives
with cross-entropy and pushes the negatives towards the uniform distribution. The table reports, as
the NAT paper's tables do, the accuracy on held-out positives and the negative confidence rate
(:func:`nda_plugins.nat.ncr`: the share of held-out negatives whose top softmax probability
exceeds a threshold; lower is better) at several thresholds, for the trained negative kind and for
kinds never seen in training.

Part 2, 1-D NAT-GAN. The real data is a mixture of two Gaussians (two classes, at ``-2`` and
``+2``); the negative data is one Gaussian mode between them, at ``0``, where a generator fed with
unimodal noise tends to leave mass while it bridges the two modes. A categorical discriminator (one
output per real mode, no "fake" class) is trained with
:func:`nda_plugins.nat.nat_gan_discriminator_loss`: reals into their mode, generated samples (and,
for NAT-GAN, the negatives) towards uniform; the generator makes the discriminator confident on its
samples. The generator is conditional (noise and a one-hot mode label in, one value out) and is
trained to make the discriminator classify its sample into the requested mode; an unconditional
generator that only maximises the discriminator's confidence runs away from the data in 1-D, where
a ReLU discriminator extrapolates ever more confidently. The plot shows the Wasserstein-1 distance
between generated and real samples over steps, GAN vs NAT-GAN, and the final samples.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import nat, transforms
from . import _output
from .shape_classes import shape_classes

__all__ = ["NatConfig", "QUICK", "format_table", "plot", "run", "train_classifier", "train_gan_1d",
           "wasserstein_1d"]

RUNS = ("baseline", "nat")
GAN_RUNS = ("gan", "nat_gan")
#: Held-out negative sets: the trained kind first, then kinds never used in training.
NEGATIVE_SETS = ("jigsaw", "stitch", "cutout", "noise")
#: 1-D data: real modes (means), their std, the negative mode, and the "negative region" half-width.
REAL_MEANS = (-2.0, 2.0)
REAL_STD = 0.25
NEGATIVE_MEAN = 0.0
NEGATIVE_STD = 0.25
NEGATIVE_REGION = 0.75


@dataclass
class NatConfig:
    """Settings of ``nda demo nat``; the CLI flags map one to one.

    Attributes:
        seeds: one baseline + one NAT classifier, and one GAN + one NAT-GAN, per seed.
        steps: classifier training steps per run.
        batch_size: positives per classifier step (NAT adds as many negatives).
        width: base channel width of the classifier.
        transform: the negative transform spec for NAT training.
        n_train: training images per class.
        n_eval: held-out images per class (positives; each negative set has as many).
        thresholds: NCR thresholds.
        gan_steps: steps per 1-D GAN run.
        gan_batch: samples per 1-D GAN step (reals, generated and negatives each).
        eval_every: 1-D GAN steps between two distance measurements.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    batch_size: int = 64
    width: int = 16
    transform: str = "jigsaw:grid=2"
    n_train: int = 300
    n_eval: int = 100
    thresholds: tuple[float, ...] = (0.5, 0.7, 0.9)
    gan_steps: int = 3000
    gan_batch: int = 256
    eval_every: int = 100

    def validate(self) -> None:
        """Raise ValueError naming the setting (as its CLI flag) when a value is out of range."""
        if not self.seeds:
            raise ValueError("--seeds: expected at least one seed, got none")
        for name in ("steps", "batch_size", "width", "n_train", "n_eval", "gan_steps", "gan_batch",
                     "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive int, got {value!r}")
        if not self.thresholds or any(not 0.0 <= t < 1.0 for t in self.thresholds):
            raise ValueError(f"--thresholds: expected numbers in [0, 1), got {self.thresholds}")
        name, _ = transforms.parse_spec(self.transform)
        if name not in transforms.available():
            raise ValueError(f"--transform: expected one of {transforms.available()}, got {self.transform!r}")
        try:
            transforms.build(self.transform)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--transform: {self.transform!r} is not a valid transform spec: {exc}") from None

    def progress_total(self) -> int:
        """Progress units of a whole run: every training step of every model."""
        return 2 * len(self.seeds) * (self.steps + self.gan_steps)


#: The ``--quick`` settings (tests, smoke runs): seconds, not minutes; the numbers mean nothing.
QUICK = dict(seeds=(0,), steps=20, batch_size=16, width=8, n_train=8, n_eval=8, gan_steps=60, gan_batch=64,
             eval_every=20)


# ----------------------------------------------------------------------------------------------
# Part 1: classifier
# ----------------------------------------------------------------------------------------------

class Classifier(nn.Module):
    """A small CNN for ``(B, 3, 32, 32)`` images: three stride-2 convolutions, global pooling, linear."""

    def __init__(self, classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def negative_sets(images: torch.Tensor, *, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Held-out negatives made from held-out positives ``images``, one set per :data:`NEGATIVE_SETS`."""
    return {
        "jigsaw": transforms.build("jigsaw", grid=2)(images, generator=generator),
        "stitch": transforms.build("stitch")(images, generator=generator),
        "cutout": transforms.build("cutout")(images, generator=generator),
        "noise": transforms.build("noise", std=0.5)(images, generator=generator),
    }


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, negative_transform=None, steps: int,
                     batch_size: int, width: int, seed: int,
                     progress: Callable[[int], None] | None = None) -> Classifier:
    """Train a :class:`Classifier`; with ``negative_transform``, NAT (negatives from each batch)."""
    torch.manual_seed(seed)
    model = Classifier(classes=int(y.max()) + 1, width=width)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        xb, yb = x[idx], y[idx]
        if negative_transform is not None:
            neg = negative_transform(xb, generator=gen)
            inputs = torch.cat([xb, neg])
            targets = torch.cat([yb, torch.full_like(yb, -1)])
            mask = torch.cat([torch.zeros_like(yb, dtype=torch.bool), torch.ones_like(yb, dtype=torch.bool)])
        else:
            inputs, targets, mask = xb, yb, None
        loss = nat.nat_loss(model(inputs), targets, negative_mask=mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(1)
    return model.eval()


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    return torch.cat([model(part) for part in x.split(chunk)])


# ----------------------------------------------------------------------------------------------
# Part 2: 1-D NAT-GAN
# ----------------------------------------------------------------------------------------------

def sample_real(n: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real 1-D samples ``(n, 1)`` and their mode labels ``(n,)`` (equal-weight mixture)."""
    labels = torch.randint(0, len(REAL_MEANS), (n,), generator=generator)
    means = torch.tensor(REAL_MEANS)[labels]
    return (means + REAL_STD * torch.randn(n, generator=generator)).unsqueeze(1), labels


def sample_negative(n: int, *, generator: torch.Generator) -> torch.Tensor:
    """``n`` negative 1-D samples ``(n, 1)`` from the negative mode."""
    return (NEGATIVE_MEAN + NEGATIVE_STD * torch.randn(n, generator=generator)).unsqueeze(1)


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """Wasserstein-1 distance between two equal-size 1-D samples: the mean gap of their sorted values."""
    a, b = a.flatten(), b.flatten()
    if a.numel() != b.numel() or a.numel() == 0:
        raise ValueError(f"a and b must hold the same non-zero number of values, got {a.numel()} and {b.numel()}")
    return float((a.sort().values - b.sort().values).abs().mean())


def _mlp(inp: int, out: int, hidden: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(inp, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, out))


def train_gan_1d(*, use_negatives: bool, steps: int, batch: int, eval_every: int, seed: int,
                 n_eval: int = 4000, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train a 1-D GAN with a categorical discriminator; NAT-GAN when ``use_negatives``.

    Returns:
        ``{"steps": [...], "w1": [...], "negative_share": [...], "samples": (n_eval,) tensor}``:
        the distance to held-out real samples and the share of generated samples with
        ``|x - NEGATIVE_MEAN| < NEGATIVE_REGION``, measured every ``eval_every`` steps and at the end.
    """
    torch.manual_seed(seed)
    modes = len(REAL_MEANS)
    G, D = _mlp(1 + modes, 1), _mlp(1, modes)

    def generate(z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return G(torch.cat([z, F.one_hot(c, modes).to(z.dtype)], dim=1))

    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(20_000 + seed)
    eval_gen = torch.Generator().manual_seed(21_000 + seed)
    held_out, c_eval = sample_real(n_eval, generator=eval_gen)
    z_eval = torch.randn(n_eval, 1, generator=eval_gen)
    curve: dict[str, list] = {"steps": [], "w1": [], "negative_share": []}

    def measure(step: int) -> torch.Tensor:
        with torch.no_grad():
            fake = generate(z_eval, c_eval)
        curve["steps"].append(step)
        curve["w1"].append(wasserstein_1d(fake, held_out))
        curve["negative_share"].append(float(((fake - NEGATIVE_MEAN).abs() < NEGATIVE_REGION).float().mean()))
        return fake.flatten()

    measure(0)
    for step in range(1, steps + 1):
        real, labels = sample_real(batch, generator=gen)
        z = torch.randn(batch, 1, generator=gen)
        c = torch.randint(0, modes, (batch,), generator=gen)
        fake = generate(z, c)
        neg_logits = D(sample_negative(batch, generator=gen)) if use_negatives else None
        d_loss = nat.nat_gan_discriminator_loss(D(real), labels, D(fake.detach()), neg_logits)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # The generator wants its sample of mode c classified as c (D pushes it to uniform instead).
        g_loss = F.cross_entropy(D(fake), c)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if progress is not None:
            progress(1)
        if step % eval_every == 0 or step == steps:
            samples = measure(step)
    curve["samples"] = samples
    return curve


# ----------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------

def _late(curve: list[float]) -> float:
    """Mean of the last quarter (at least one) of a curve's measurements, step 0 excluded."""
    points = curve[1:] or curve
    return statistics.fmean(points[-max(1, len(points) // 4):])


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), _output.spread(values)


def run(config: NatConfig, out_dir: Path, *, progress: Callable[[int], None] | None = None,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train, evaluate and write every output into ``out_dir`` (which must exist).

    Returns:
        The result dictionary also written to ``out_dir / "results.json"``.
    """
    config.validate()
    started = time.perf_counter()
    negative_transform = transforms.build(config.transform)
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    gan_per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in GAN_RUNS}
    grids: dict[str, torch.Tensor] = {}
    samples_1d: dict[str, torch.Tensor] = {}
    for seed in config.seeds:
        data_gen = torch.Generator().manual_seed(50_000 + seed)
        x, y = shape_classes(config.n_train, generator=data_gen)
        x_eval, y_eval = shape_classes(config.n_eval, generator=data_gen)
        negatives = negative_sets(x_eval, generator=data_gen)
        if seed == config.seeds[0]:
            pick = torch.arange(10) * config.n_eval  # one image of each class
            grids["sets"] = torch.cat([x_eval[pick]] + [negatives[name][pick] for name in NEGATIVE_SETS])
        for name in RUNS:
            model = train_classifier(x, y, negative_transform=negative_transform if name == "nat" else None,
                                     steps=config.steps, batch_size=config.batch_size, width=config.width,
                                     seed=seed, progress=progress)
            accuracy = float((_logits(model, x_eval).argmax(1) == y_eval).float().mean())
            ncr = {s: {str(t): float(nat.ncr(_logits(model, negatives[s]), t)) for t in config.thresholds}
                   for s in NEGATIVE_SETS}
            per_seed[name].append({"seed": seed, "accuracy": accuracy, "ncr": ncr})
        for name in GAN_RUNS:
            curve = train_gan_1d(use_negatives=name == "nat_gan", steps=config.gan_steps, batch=config.gan_batch,
                                 eval_every=config.eval_every, seed=seed, progress=progress)
            if seed == config.seeds[0]:
                samples_1d[name] = curve["samples"]
            curve.pop("samples")
            gan_per_seed[name].append({"seed": seed, **curve})

    classifier: dict[str, Any] = {}
    for name in RUNS:
        acc = _mean_std([e["accuracy"] for e in per_seed[name]])
        ncr_mean: dict[str, dict[str, float]] = {}
        ncr_std: dict[str, dict[str, float]] = {}
        for s in NEGATIVE_SETS:
            ncr_mean[s], ncr_std[s] = {}, {}
            for t in config.thresholds:
                ncr_mean[s][str(t)], ncr_std[s][str(t)] = _mean_std([e["ncr"][s][str(t)] for e in per_seed[name]])
        classifier[name] = {"accuracy": acc[0], "accuracy_std": acc[1], "ncr": ncr_mean, "ncr_std": ncr_std,
                            "per_seed": per_seed[name]}
    gan_1d: dict[str, Any] = {}
    for name in GAN_RUNS:
        # GAN curves wander from one measurement to the next: average the last quarter of each.
        w1 = _mean_std([_late(e["w1"]) for e in gan_per_seed[name]])
        share = _mean_std([_late(e["negative_share"]) for e in gan_per_seed[name]])
        gan_1d[name] = {"late_w1": w1[0], "late_w1_std": w1[1], "late_negative_share": share[0],
                        "late_negative_share_std": share[1], "per_seed": gan_per_seed[name]}
    result = {
        "demo": "nat",
        "seeds": list(config.seeds),
        "settings": {key: (list(v) if isinstance(v, tuple) else v) for key, v in asdict(config).items()},
        "negative_sets": list(NEGATIVE_SETS),
        "thresholds": list(config.thresholds),
        "classifier": classifier,
        "gan_1d": {"real_means": list(REAL_MEANS), "real_std": REAL_STD, "negative_mean": NEGATIVE_MEAN,
                   "negative_std": NEGATIVE_STD, "negative_region": NEGATIVE_REGION, "runs": gan_1d},
        "seconds": round(time.perf_counter() - started, 1),
        "files": {"json": "results.json", "table": "table.txt", "plot": "gan_1d.png", "grids": ["sets.png"]},
    }
    _output.save_grid(out_dir / "sets.png", grids["sets"], nrow=10)
    (out_dir / "table.txt").write_text(format_table(result) + "\n")
    if not plot(result, samples_1d, out_dir / "gan_1d.png"):
        log(_output.MATPLOTLIB_HINT)
        result["files"]["plot"] = None
    _output.write_json(out_dir / "results.json", result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The printed tables: classifier accuracy and NCR; the 1-D GAN's final distance."""
    thresholds = [str(t) for t in result["thresholds"]]
    trained = result["settings"]["transform"]
    lines = [f"Classifier on 10 shape classes, seeds {result['seeds']} (mean ± std); NAT negatives: {trained}",
             f"accuracy on held-out positives (higher is better)"]
    for name in RUNS:
        entry = result["classifier"][name]
        lines.append(f"  {name:<10}{entry['accuracy']:.3f} ± {entry['accuracy_std']:.3f}")
    head = f"  {'NCR@t':<16}" + "".join(f"{f'{name} t={t}':>19}" for t in thresholds for name in RUNS)
    lines += ["negative confidence rate on held-out negatives (share with top softmax > t; lower is better)",
              head, "  " + "-" * (len(head) - 2)]
    for s in result["negative_sets"]:
        cells = ""
        for t in thresholds:
            for name in RUNS:
                entry = result["classifier"][name]
                cells += f"{entry['ncr'][s][t]:.3f} ± {entry['ncr_std'][s][t]:.3f}".rjust(19)
        lines.append(f"  {s:<16}{cells}")
    g = result["gan_1d"]
    region = f"share within ±{g['negative_region']} of negative"
    lines += ["",
              f"1-D GAN: real modes at {g['real_means']} (std {g['real_std']}), negative mode at "
              f"{g['negative_mean']}; {result['settings']['gan_steps']} steps, mean of the last quarter of the "
              f"measurements (every {result['settings']['eval_every']} steps)",
              f"  {'run':<10}{'W1 to real (lower is better)':>32}{region:>34}"]
    for name in GAN_RUNS:
        e = g["runs"][name]
        w1 = f"{e['late_w1']:.3f} ± {e['late_w1_std']:.3f}"
        share = f"{e['late_negative_share']:.3f} ± {e['late_negative_share_std']:.3f}"
        lines.append(f"  {name:<10}{w1:>32}{share:>34}")
    return "\n".join(lines)


def plot(result: dict[str, Any], samples: dict[str, torch.Tensor], path: Path) -> bool:
    """W1 over steps (mean and per-seed) and the final sample histograms. False without matplotlib."""
    plt = _output.pyplot()
    if plt is None:
        return False
    g = result["gan_1d"]
    fig, (ax_w, ax_h) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, colour, label in (("gan", "tab:gray", "GAN"), ("nat_gan", "tab:blue", "NAT-GAN")):
        seeds = g["runs"][name]["per_seed"]
        for entry in seeds:
            ax_w.plot(entry["steps"], entry["w1"], color=colour, alpha=0.3, linewidth=1)
        mean = [statistics.fmean(vals) for vals in zip(*(e["w1"] for e in seeds))]
        ax_w.plot(seeds[0]["steps"], mean, color=colour, linewidth=2, label=f"{label} (mean of {len(seeds)} seeds)")
    ax_w.set_yscale("log")
    ax_w.set_xlabel("training step")
    ax_w.set_ylabel("Wasserstein-1 to real samples")
    ax_w.set_title("Distance to the real distribution")
    ax_w.legend(loc="upper right")
    bins = torch.linspace(-4, 4, 81)
    real, _ = sample_real(4000, generator=torch.Generator().manual_seed(0))
    neg = sample_negative(4000, generator=torch.Generator().manual_seed(1))
    centres = ((bins[1:] + bins[:-1]) / 2).tolist()
    width = float(bins[1] - bins[0])
    for data, colour, label, kind in ((real, "black", "real", "step"), (neg, "tab:red", "negative", "step"),
                                      (samples.get("gan"), "tab:gray", "GAN", "bar"),
                                      (samples.get("nat_gan"), "tab:blue", "NAT-GAN", "bar")):
        if data is None:
            continue
        counts = torch.histogram(data.flatten().clamp(-4, 4), bins=bins).hist
        density = (counts / counts.sum() / width).tolist()
        if kind == "step":
            ax_h.step(centres, density, where="mid", color=colour, label=label, linewidth=1.5)
        else:
            ax_h.bar(centres, density, width=width, color=colour, alpha=0.45, label=label)
    ax_h.set_xlabel("x")
    ax_h.set_ylabel("density")
    ax_h.set_title(f"Samples at the end (seed {result['seeds'][0]})")
    ax_h.legend(loc="upper center", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
