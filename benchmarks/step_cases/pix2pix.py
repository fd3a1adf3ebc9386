"""Step case for benchmarks/bench_step.py: one pix2pix discriminator step, plain / weighted / replace.

The step is ``forward()`` + ``backward_D()`` + ``optimizer_D.step()`` of the NDA model
(:class:`nda_plugins.adapters.pix2pix.mixin.Pix2PixNDAMixin`) on a tiny config: batch 8, 64x64,
upstream's 3-layer PatchGAN D (``ndf=16``) and a small generator. With ``NDA_UPSTREAM_PIX2PIX``
set to a checkout, upstream's own ``Pix2PixModel`` is used (``--netG resnet_6blocks --ngf 8 --ndf 16``,
set up by its own ``setup``); without it, a stand-in with the same D layout (``basic`` PatchGAN:
conv-LeakyReLU, 2x conv-norm-LeakyReLU, conv-norm-LeakyReLU, conv; BCE-with-logits GANLoss).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch
import torch.nn as nn

NAME = "pix2pix"
VARIANTS = ("weighted", "replace")
BATCH, RES, NDF = 8, 64, 16


def skip_reason() -> str | None:
    return None


def source() -> str:
    """Which implementation the rows measure (shown in the benchmark table)."""
    if os.environ.get("NDA_UPSTREAM_PIX2PIX"):
        return "upstream Pix2PixModel (checkout)"
    return "stand-in with upstream's PatchGAN D (no upstream)"


class _GANLoss(nn.Module):
    """Upstream's ``vanilla`` GANLoss: BCE-with-logits against an expanded 1 / 0 target."""

    def __init__(self):
        super().__init__()
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, pred, target_is_real):
        return self.loss(pred, torch.tensor(1.0 if target_is_real else 0.0, device=pred.device).expand_as(pred))


def _patchgan(in_ch: int, ndf: int) -> nn.Module:
    layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    ch = ndf
    for mult in (2, 4):
        layers += [nn.Conv2d(ch, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        ch = ndf * mult
    layers += [nn.Conv2d(ch, ndf * 8, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(ndf * 8, 1, 4, 1, 1)]
    return nn.Sequential(*layers)


class _StandIn:
    """The Pix2PixModel interface the mixin uses, with upstream's D layout and loss."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        return parser

    def __init__(self, opt):
        self.opt, self.isTrain, self.device = opt, True, opt.device
        self.save_dir = opt.save_dir
        self.loss_names = ["G_GAN", "G_L1", "D_real", "D_fake"]
        self.netG = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 3, 3, 1, 1), nn.Tanh()).to(self.device)
        self.netD = _patchgan(6, NDF).to(self.device)
        self.criterionGAN = _GANLoss()
        self.optimizer_D = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def set_input(self, data):
        self.real_A, self.real_B = data["A"].to(self.device), data["B"].to(self.device)

    def forward(self):
        self.fake_B = self.netG(self.real_A)

    def backward_D(self):
        fake_AB = torch.cat((self.real_A, self.fake_B), 1)
        self.loss_D_fake = self.criterionGAN(self.netD(fake_AB.detach()), False)
        self.loss_D_real = self.criterionGAN(self.netD(torch.cat((self.real_A, self.real_B), 1)), True)
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        self.loss_D.backward()


def _base_class():
    root = os.environ.get("NDA_UPSTREAM_PIX2PIX")
    if not root:
        return _StandIn, False
    if root not in sys.path:
        sys.path.insert(0, root)
    from models.pix2pix_model import Pix2PixModel

    return Pix2PixModel, True


def build(variant: str | None, device: torch.device, seed: int = 0) -> dict:
    if variant not in (None,) + VARIANTS:
        raise ValueError(f"variant must be None or one of {list(VARIANTS)}, got {variant!r}")
    from nda_plugins.adapters.pix2pix.model import make_model_class

    base, upstream = _base_class()
    cls = make_model_class(base)
    argv = ["--gan_mode", "vanilla"] + ([] if variant is None else ["--nda", "jigsaw", "--nda_mode", variant])
    if upstream:
        from options.train_options import TrainOptions

        argv = ["--dataroot", ".", "--model", "pix2pix", "--netG", "resnet_6blocks", "--ngf", "8", "--ndf", str(NDF),
                "--checkpoints_dir", tempfile.mkdtemp(prefix="nda-bench-"), "--name", "bench"] + argv
        parser = TrainOptions().initialize(argparse.ArgumentParser())
        parser = cls.modify_commandline_options(parser, True)
        opt = parser.parse_args(argv)
        opt.isTrain, opt.device = True, torch.device(device)
    else:
        parser = argparse.ArgumentParser()
        parser.add_argument("--gan_mode", default="vanilla")
        parser = cls.modify_commandline_options(parser, True)
        opt = parser.parse_args(argv)
        opt.isTrain, opt.device, opt.save_dir = True, torch.device(device), tempfile.mkdtemp(prefix="nda-bench-")
    torch.manual_seed(seed)
    model = cls(opt)
    if upstream:
        model.setup(opt)  # upstream's init and .to(device)
    g = torch.Generator().manual_seed(seed)
    data = {"A": torch.rand(BATCH, 3, RES, RES, generator=g) * 2 - 1, "B": torch.rand(BATCH, 3, RES, RES, generator=g) * 2 - 1,
            "A_paths": [""] * BATCH, "B_paths": [""] * BATCH}
    model.set_input(data)
    with torch.no_grad():
        model.forward()
    fake_B = model.fake_B

    def step():
        model.fake_B = fake_B  # the same batch every call; G's forward is not part of the D step
        model.optimizer_D.zero_grad(set_to_none=True)
        model.backward_D()
        model.optimizer_D.step()
        if model.nda is not None:
            model.nda.advance()

    out = {"step": step}
    if variant is None:
        crit = model.criterionGAN

        def fake_d_pass():
            model.optimizer_D.zero_grad(set_to_none=True)
            fake_AB = torch.cat((model.real_A, fake_B), 1)
            (crit(model.netD(fake_AB), False) * 0.5).backward()

        out["fake_d_pass"] = fake_d_pass
    return out
