"""A small DCGAN-style generator / discriminator pair and the training loop both demos share.

The loop is the textbook alternating GAN update; the only NDA-specific lines are the ones that
ask the library for negatives (any ``t(x, *, generator=None) -> Tensor`` from
:func:`nda_plugins.transforms.build`) and pass their logits to
:func:`nda_plugins.losses.discriminator_loss` with ``nda_weight``. With ``nda_weight=0`` it is the
baseline, bit for bit the same random stream (negatives are still drawn, so both runs consume the
same random numbers and differ only by the objective).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from .. import losses

__all__ = ["Discriminator", "Generator", "TrainConfig", "sample", "scores", "train_gan"]


class Generator(nn.Module):
    """``z (B, z_dim) -> image (B, 3, size, size)`` in ``[-1, 1]``.

    Linear to ``(width * size / 8, 4, 4)``, then transposed convolutions doubling the side and
    halving the channels up to ``size`` (a power of two >= 8), batch norm + ReLU between, ``tanh``
    at the end. For ``size=32``, ``width=16``: 64 -> 32 -> 16 -> 3 channels.
    """

    def __init__(self, z_dim: int = 64, width: int = 32, size: int = 32):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size: expected a power of two >= 8, got {size}")
        self.z_dim, self.size = z_dim, size
        ups = size.bit_length() - 3  # transposed convolutions from 4x4 up to size x size
        chans = [width * 2 ** (ups - 1 - i) for i in range(ups)] + [3]  # e.g. 128, 64, 32, 3
        self.fc = nn.Sequential(nn.Linear(z_dim, chans[0] * 16), nn.BatchNorm1d(chans[0] * 16), nn.ReLU())
        layers: list[nn.Module] = []
        for i in range(ups):
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], 4, stride=2, padding=1))
            layers += [nn.Tanh()] if i == ups - 1 else [nn.BatchNorm2d(chans[i + 1]), nn.ReLU()]
        self.net = nn.Sequential(*layers)
        self._c0 = chans[0]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(z.shape[0], self._c0, 4, 4))


class Discriminator(nn.Module):
    """``image (B, 3, size, size) -> logit (B,)``.

    Strided convolutions halving the side down to 4 (doubling the channels from ``width``),
    LeakyReLU, spectral normalisation on every layer, a two-layer head. No batch norm: real, fake
    and negative batches go through separate passes, so batch statistics would leak between them.

    With ``minibatch_std=True`` the head also sees the standard deviation of the features over the
    batch (one number, as an extra 4x4 channel; StyleGAN's minibatch standard deviation): a batch
    of near-identical fakes is then easy to tell from a batch of reals, which keeps G from
    collapsing onto one image. The logit of a sample then depends on its batch, so leave it off
    when D's scores are used per sample (the anomaly demo). ``sn=False`` drops the spectral
    normalisation (a plain DCGAN-style discriminator).
    """

    def __init__(self, width: int = 32, size: int = 32, *, minibatch_std: bool = False, sn: bool = True):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size: expected a power of two >= 8, got {size}")
        downs = size.bit_length() - 3
        layers: list[nn.Module] = []
        cin = 3
        spectral_norm = _spectral_norm if sn else (lambda m: m)
        for i in range(downs):
            cout = width * 2 ** i
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.minibatch_std = minibatch_std
        feats = cin * 16 + (16 if minibatch_std else 0)
        # A hidden layer in the head: with a single linear layer on the 4x4 map (one feature per 8x8
        # region) D's logit is roughly monotonic in the number of dots, so it can say "fewer" or
        # "more" but never "exactly k", and G swings between no dots and every cell lit.
        self.head = nn.Sequential(
            spectral_norm(nn.Linear(feats, 4 * width)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Linear(4 * width, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        if self.minibatch_std:
            spread = h.std(dim=0, unbiased=False).mean() if h.shape[0] > 1 else h.new_zeros(())
            h = torch.cat([h, spread.expand(h.shape[0], 1, *h.shape[2:])], dim=1)
        return self.head(h.flatten(1)).squeeze(1)


@dataclass
class TrainConfig:
    """Settings of one training run (both demos).

    Attributes:
        steps: number of (D, G) update pairs.
        batch_size: samples per batch (real, fake and negative batches alike).
        z_dim: latent size.
        width: base channel width of G and D.
        size: image side.
        lr: Adam learning rate of G; D uses ``lr * lr_d_scale``.
        lr_d_scale: D's learning rate over G's (two time-scale update rule when > 1).
        betas: Adam betas (both nets).
        d_steps: D updates per G update (each on a fresh real / fake / negative batch).
        ema: decay of the exponential moving average of G's weights used for sampling
            (0 disables it and samples from G itself).
        nda_weight: ``w`` of :func:`nda_plugins.losses.discriminator_loss` (0 = baseline).
        kind: loss kind of :mod:`nda_plugins.losses`.
        minibatch_std: give D the minibatch standard deviation feature (see :class:`Discriminator`).
        sn: spectral normalisation on D's layers.
    """

    steps: int = 1000
    batch_size: int = 64
    z_dim: int = 64
    width: int = 16
    size: int = 32
    lr: float = 2e-4
    lr_d_scale: float = 1.0
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = 1
    ema: float = 0.0
    nda_weight: float = 0.0
    kind: str = "logistic"
    minibatch_std: bool = False
    sn: bool = True


def train_gan(
    real_pool: torch.Tensor,
    negatives: Callable[..., torch.Tensor],
    config: TrainConfig,
    *,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[Generator, Discriminator]:
    """Train G and D on batches drawn from ``real_pool``, with NDA when ``config.nda_weight > 0``.

    Args:
        real_pool: ``(N, 3, size, size)`` training images in ``[-1, 1]``.
        negatives: a library transform ``t(x, *, generator=None) -> Tensor`` giving one negative
            per real sample (e.g. ``transforms.build("source", source=pool)`` or
            ``transforms.build("jigsaw")``).
        config: the run's :class:`TrainConfig`.
        seed: seeds the model initialisation and every random draw of the run.
        progress: called with the number of steps just done (for a progress bar).

    Returns:
        ``(G, D)`` in eval mode.
    """
    # Module initialisation draws from the global generator: seed it without leaking the change.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(config.z_dim, config.width, config.size)
        D = Discriminator(config.width, config.size, minibatch_std=config.minibatch_std, sn=config.sn)
    gen = torch.Generator().manual_seed(seed)
    betas = (float(config.betas[0]), float(config.betas[1]))
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr * config.lr_d_scale, betas=betas)
    G_avg = copy.deepcopy(G) if config.ema > 0 else None
    n, b = real_pool.shape[0], config.batch_size
    w = float(config.nda_weight)
    report_every = 10
    for step in range(config.steps):
        for _ in range(config.d_steps):
            real = real_pool[torch.randint(n, (b,), generator=gen)]
            z = torch.randn(b, config.z_dim, generator=gen)
            neg = negatives(real, generator=gen)
            with torch.no_grad():
                fake = G(z)
            # Negatives are always drawn (same random stream in both runs); D only sees them with NDA.
            neg_logits = D(neg) if w > 0 else None
            loss_d = losses.discriminator_loss(D(real), D(fake), neg_logits, nda_weight=w, kind=config.kind)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

        z = torch.randn(b, config.z_dim, generator=gen)
        loss_g = losses.generator_loss(D(G(z)), kind=config.kind)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if G_avg is not None:
            _update_average(G_avg, G, config.ema)
        if progress is not None and (step + 1) % report_every == 0:
            progress(report_every)
    if progress is not None and config.steps % report_every:
        progress(config.steps % report_every)
    return (G_avg if G_avg is not None else G).eval(), D.eval()


@torch.no_grad()
def _update_average(avg: nn.Module, model: nn.Module, decay: float) -> None:
    """``avg <- decay * avg + (1 - decay) * model`` for weights; buffers (BN statistics) copied."""
    for p_avg, p in zip(avg.parameters(), model.parameters()):
        p_avg.lerp_(p, 1.0 - decay)
    for b_avg, b in zip(avg.buffers(), model.buffers()):
        b_avg.copy_(b)


@torch.no_grad()
def sample(G: Generator, n: int, *, seed: int, chunk: int = 512) -> torch.Tensor:
    """``n`` samples ``(n, 3, size, size)`` from ``G`` with latents drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=gen)
    return torch.cat([G(part) for part in z.split(chunk)])


@torch.no_grad()
def scores(D: Discriminator, x: torch.Tensor, *, chunk: int = 512) -> torch.Tensor:
    """``D``'s logits ``(N,)`` for ``x`` ``(N, 3, size, size)``, in chunks."""
    return torch.cat([D(part) for part in x.split(chunk)])
