"""Step case for benchmarks/bench_step.py: one StyleGAN2-ADA discriminator step (``Dmain``).

The step is what upstream's ``training_loop`` does for the ``Dmain`` phase: zero D's grads,
``loss.accumulate_gradients("Dmain", real, real_c, gen_z, gen_c, sync=True, gain=1)`` (G frozen,
D trainable), ``D_opt.step()``, and for NDA the adapter's once-per-iteration ``nda_advance()``.
The NDA loss is always the adapter's :class:`~nda_plugins.adapters.stylegan2_ada.mixin.NDALossMixin`
on top of the plain loss, so the plain and NDA rows differ only by what the adapter adds.

Two sources, named in the benchmark table:

* ``NDA_UPSTREAM_STYLEGAN2_ADA`` set to a stylegan2-ada-pytorch checkout (patched or not):
  upstream's ``StyleGAN2Loss`` and ``NDAStyleGAN2Loss`` with upstream's own ``Generator`` /
  ``Discriminator`` at a tiny config (32x32, batch 16, ``channel_base=2048``, ``channel_max=64``,
  ``z_dim = w_dim = 64``, 10 classes, no ADA pipe, ``fp32``; on CUDA the fused ops if they build).
* otherwise a stand-in written here: a small conditional conv G and a projection D (3 strided
  convs of width 32-64-128, then ``(h * embed(c)).sum``), and a loss class with upstream's
  ``run_G`` / ``run_D`` / ``Dmain`` logic (logistic loss, ``training_stats``-style moments for every
  reported value); the NDA loss is the adapter's mixin on that class, exactly as
  ``NDAStyleGAN2Loss`` is on upstream's.

Variants: ``weighted``, ``replace`` (jigsaw, w = 0.75) and ``anda`` (ANDA on the weighted estimator,
``anda_interval=1`` so alpha moves every step).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

NAME = "stylegan2_ada"
VARIANTS = ("weighted", "replace", "anda")
#: the estimator each variant uses (picks its target in bench_step.py)
VARIANT_MODES = {"weighted": "weighted", "replace": "replace", "anda": "weighted"}
ENV = "NDA_UPSTREAM_STYLEGAN2_ADA"
BATCH, RES, N_CLASSES, Z_DIM = 16, 32, 10, 64


def skip_reason() -> str | None:
    path = os.environ.get(ENV)
    if path and not (Path(path) / "training" / "loss.py").is_file():
        return f"{ENV}={path} has no training/loss.py"
    if path:
        for module in ("numpy", "requests"):  # upstream's dnnlib imports both
            if importlib.util.find_spec(module) is None:
                return f"{module} is missing (upstream's dnnlib imports it)"
    return None


def source() -> str:
    """Which implementation the rows measure (shown in the table)."""
    if os.environ.get(ENV):
        return "upstream StyleGAN2Loss + G/D (checkout)"
    return "stand-in G/D + loss, adapter mixin (no upstream)"


# -- the stand-in (no upstream) --------------------------------------------------------------------
def _moments(value) -> torch.Tensor:
    """What upstream's ``training_stats.report`` computes for every value it is given."""
    elems = torch.as_tensor(value).detach().flatten().float()
    return torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()]).double()


class _TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.mapping = nn.Sequential(nn.Linear(Z_DIM + N_CLASSES, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64))
        self.synthesis = nn.Sequential(
            nn.Unflatten(1, (4, 4, 4)), nn.Upsample(scale_factor=2), nn.Conv2d(4, 32, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(16, 3, 3, 1, 1))


class _TinyD(nn.Module):
    """Projection discriminator: conv trunk, then ``linear(h) + (h * embed(c)).sum / sqrt(dim)``."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128 * 16, 128), nn.LeakyReLU(0.2))
        self.out = nn.Linear(128, 1)
        self.embed = nn.Linear(N_CLASSES, 128, bias=False)

    def forward(self, img, c):
        h = self.trunk(img)
        return self.out(h) + (h * self.embed(c)).sum(1, keepdim=True) / 128 ** 0.5


class _StandInLoss:
    """Upstream's ``StyleGAN2Loss`` interface and ``Dmain`` logic on the tiny modules."""

    def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, r1_gamma=10):
        self.device, self.G_mapping, self.G_synthesis, self.D = device, G_mapping, G_synthesis, D
        self.augment_pipe, self.r1_gamma = augment_pipe, r1_gamma
        self.stats: dict[str, torch.Tensor] = {}

    def _report(self, name, value):
        m = _moments(value)
        self.stats[name] = self.stats[name] + m if name in self.stats else m

    def run_G(self, z, c, sync):
        ws = self.G_mapping(torch.cat([z, c], 1))
        return self.G_synthesis(ws), ws

    def run_D(self, img, c, sync):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return self.D(img, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        if phase != "Dmain":
            raise ValueError(f"phase: this stand-in runs only 'Dmain', got {phase!r}")
        gen_img, _ = self.run_G(gen_z, gen_c, sync=False)
        gen_logits = self.run_D(gen_img, gen_c, sync=False)
        self._report("Loss/scores/fake", gen_logits)
        self._report("Loss/signs/fake", gen_logits.sign())
        loss_gen = F.softplus(gen_logits)
        loss_gen.mean().mul(gain).backward()
        real_logits = self.run_D(real_img.detach(), real_c, sync=sync)
        self._report("Loss/scores/real", real_logits)
        self._report("Loss/signs/real", real_logits.sign())
        loss_real = F.softplus(-real_logits)
        self._report("Loss/D/loss", loss_gen + loss_real)
        loss_real.mean().mul(gain).backward()


def _stand_in(device):
    from nda_plugins.adapters.stylegan2_ada.mixin import NDALossMixin

    class StandInNDALoss(NDALossMixin, _StandInLoss):
        # As NDAStyleGAN2Loss does: the mixin's no-op ``_report`` would otherwise shadow the base's.
        _report = _StandInLoss._report

    G, D = _TinyG().to(device), _TinyD().to(device)
    return G.mapping, G.synthesis, D, _StandInLoss, StandInNDALoss


def _upstream(device):
    root = os.environ[ENV]
    if root not in sys.path:
        sys.path.insert(0, root)
    networks = importlib.import_module("training.networks")
    plain = importlib.import_module("training.loss").StyleGAN2Loss
    nda = importlib.import_module("nda_plugins.adapters.stylegan2_ada.loss").NDAStyleGAN2Loss
    G = networks.Generator(z_dim=Z_DIM, c_dim=N_CLASSES, w_dim=Z_DIM, img_resolution=RES, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=2048, channel_max=64, num_fp16_res=0)).to(device)
    D = networks.Discriminator(c_dim=N_CLASSES, img_resolution=RES, img_channels=3, channel_base=2048,
                               channel_max=64, num_fp16_res=0, epilogue_kwargs=dict(mbstd_group_size=4)).to(device)
    return G.mapping, G.synthesis, D, plain, nda


def build(variant: str | None, device, seed: int = 0) -> dict:
    if variant not in (None,) + VARIANTS:
        raise ValueError(f"variant must be None or one of {list(VARIANTS)}, got {variant!r}")
    device = torch.device(device)
    torch.manual_seed(seed)
    mapping, synthesis, D, plain_cls, nda_cls = (_upstream if os.environ.get(ENV) else _stand_in)(device)
    for module in (mapping, synthesis):
        module.requires_grad_(False)  # upstream's loop: only the phase's module has grads
    D.requires_grad_(True)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99), eps=1e-8)  # upstream's cifar D_opt
    if variant is None:
        loss = plain_cls(device, G_mapping=mapping, G_synthesis=synthesis, D=D, r1_gamma=0.01)
    else:
        nda_kwargs = dict(transform="jigsaw", weight=0.75, mode=VARIANT_MODES[variant], seed=seed)
        if variant == "anda":
            nda_kwargs.update(anda=True, anda_interval=1, anda_kimg=1.0, batch_size=BATCH)
        loss = nda_cls(device, G_mapping=mapping, G_synthesis=synthesis, D=D, r1_gamma=0.01, nda_kwargs=nda_kwargs)
    if hasattr(loss, "style_mixing_prob"):
        loss.style_mixing_prob = 0.0  # no random mixing cut: the plain and NDA steps do the same G work

    g = torch.Generator().manual_seed(seed)
    real = (torch.rand(BATCH, 3, RES, RES, generator=g) * 2 - 1).to(device)
    real_c = F.one_hot(torch.randint(0, N_CLASSES, (BATCH,), generator=g), N_CLASSES).float().to(device)
    gen_z = torch.randn(BATCH, Z_DIM, generator=g).to(device)
    gen_c = F.one_hot(torch.randint(0, N_CLASSES, (BATCH,), generator=g), N_CLASSES).float().to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss.accumulate_gradients(phase="Dmain", real_img=real, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                  sync=True, gain=1)
        opt.step()
        if variant is not None:
            loss.nda_advance()

    out = {"step": step, "loss": loss, "D": D}
    if variant is None:
        with torch.no_grad():
            gen_img, _ = loss.run_G(gen_z, gen_c, sync=False)

        def fake_d_pass():
            # One D forward + backward on a batch of fakes: what `weighted` adds on the negatives.
            opt.zero_grad(set_to_none=True)
            F.softplus(loss.run_D(gen_img, gen_c, sync=False)).mean().backward()

        out["fake_d_pass"] = fake_d_pass
    return out
