"""Step case for benchmarks/bench_step.py: one BigGAN-PyTorch discriminator step, plain and with NDA.

Upstream's own ``BigGAN.G_D`` / ``Discriminator`` / ``losses.discriminator_loss`` from the
checkout in ``NDA_UPSTREAM_BIGGAN`` (patched or not: only ``BigGAN.py``, ``layers.py``,
``losses.py`` and ``sync_batchnorm`` are imported), a tiny CIFAR-sized config (32x32, width 32,
batch 32, 10 classes), and the adapter's ``NDAGD`` wrapper exactly as the patched
``train_fns.GAN_training_function`` calls it.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

NAME = "biggan"
VARIANTS = ("weighted", "replace")
ENV = "NDA_UPSTREAM_BIGGAN"
BATCH, RES, WIDTH, N_CLASSES, DIM_Z = 32, 32, 32, 10, 64


def skip_reason() -> str | None:
    path = os.environ.get(ENV)
    if not path:
        return f"{ENV} is not set (a BigGAN-PyTorch checkout)"
    if not (Path(path) / "BigGAN.py").is_file():
        return f"{ENV}={path} has no BigGAN.py"
    try:
        importlib.import_module("numpy")
    except ImportError:
        return "numpy is missing (upstream's BigGAN.py imports it)"
    return None


def source() -> str:
    """Which implementation the rows measure (shown in the benchmark table)."""
    return "upstream BigGAN G_D + hinge loss (checkout)"


def _upstream():
    root = os.environ[ENV]
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("BigGAN"), importlib.import_module("losses")


def build(variant: str | None, device, seed: int = 0) -> dict:
    import torch

    from nda_plugins import NDASession
    from nda_plugins.adapters.biggan import training

    if variant not in (None,) + VARIANTS:
        raise ValueError(f"variant must be None or one of {VARIANTS}, got {variant!r}")
    model, up_losses = _upstream()
    torch.manual_seed(seed)
    cfg = dict(resolution=RES, G_ch=WIDTH, D_ch=WIDTH, dim_z=DIM_Z, shared_dim=DIM_Z, n_classes=N_CLASSES,
               G_attn="0", D_attn="0", G_shared=True, hier=False, G_lr=2e-4, D_lr=2e-4, D_B1=0.0, D_B2=0.999)
    G = model.Generator(**cfg).to(device)
    D = model.Discriminator(**cfg).to(device)
    gd = model.G_D(G, D)
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(BATCH, DIM_Z, generator=g).to(device)
    gy = torch.randint(0, N_CLASSES, (BATCH,), generator=g).to(device)
    x = (torch.rand(BATCH, 3, RES, RES, generator=g) * 2 - 1).to(device)
    dy = torch.randint(0, N_CLASSES, (BATCH,), generator=g).to(device)
    loss_fn = up_losses.discriminator_loss

    if variant is None:
        def step():
            D.optim.zero_grad()
            d_fake, d_real = gd(z, gy, x, dy, train_G=False)
            loss_real, loss_fake = loss_fn(d_fake, d_real)
            (loss_real + loss_fake).backward()
            D.optim.step()

        with torch.no_grad():
            fake = G(z, G.shared(gy))

        def fake_d_pass():
            D.optim.zero_grad()
            _, loss_fake = loss_fn(D(fake, gy), torch.zeros(1, 1, device=device))
            loss_fake.backward()

        return {"step": step, "fake_d_pass": fake_d_pass}

    wrapper = training.NDAGD(gd, NDASession(transform="jigsaw", weight=0.75, mode=variant, seed=seed),
                             state_dict={"epoch": 0})

    def nda_step():
        D.optim.zero_grad()
        d_fake, d_real = wrapper(z, gy, x, dy, train_G=False)
        loss_real, loss_fake = loss_fn(d_fake, d_real)
        loss_real, loss_fake = training.d_losses(wrapper, d_fake, d_real, loss_real, loss_fake, loss_fn=loss_fn)
        (loss_real + loss_fake).backward()
        D.optim.step()

    return {"step": nda_step}
