"""Contract tests for nda_plugins.adapters.pix2pix (no upstream code needed).

``MiniPix2Pix`` below mirrors the interface of upstream's ``Pix2PixModel`` (the attributes and
methods the mixin uses), with a tiny PatchGAN-like D, and upstream's GANLoss formula written out:
BCE-with-logits (``vanilla``) or MSE (``lsgan``) against a target tensor of ones / zeros.
"""

from __future__ import annotations

import argparse
import os

import pytest
import torch
import torch.nn as nn

from nda_plugins import losses
from nda_plugins.adapters.pix2pix import model as p2p_model
from nda_plugins.adapters.pix2pix import options as p2p_options
from nda_plugins.adapters.pix2pix.mixin import STATE_FILE


class GANLossRef(nn.Module):
    """Upstream's GANLoss formula: the loss against a target tensor expanded to the prediction."""

    def __init__(self, gan_mode):
        super().__init__()
        self.loss = nn.BCEWithLogitsLoss() if gan_mode == "vanilla" else nn.MSELoss()

    def forward(self, pred, target_is_real):
        target = torch.tensor(1.0 if target_is_real else 0.0).expand_as(pred)
        return self.loss(pred, target)


class MiniPix2Pix:
    """The parts of upstream's Pix2PixModel the mixin relies on."""

    @staticmethod
    def modify_commandline_options(parser, is_train=True):
        if is_train:
            parser.add_argument("--lambda_L1", type=float, default=100.0)
        return parser

    def __init__(self, opt):
        self.opt = opt
        self.isTrain = opt.isTrain
        self.device = torch.device("cpu")
        self.save_dir = opt.save_dir
        self.loss_names = ["G_GAN", "G_L1", "D_real", "D_fake"]
        torch.manual_seed(0)
        self.netG = nn.Conv2d(3, 3, 3, padding=1)
        self.netD = nn.Sequential(nn.Conv2d(6, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, 1, 1))
        self.criterionGAN = GANLossRef(opt.gan_mode)
        self.optimizer_D = torch.optim.SGD(self.netD.parameters(), lr=0.01)

    def set_input(self, data):
        self.real_A, self.real_B = data["A"], data["B"]

    def forward(self):
        self.fake_B = self.netG(self.real_A)

    def backward_D(self):  # upstream's formula
        fake_AB = torch.cat((self.real_A, self.fake_B), 1)
        pred_fake = self.netD(fake_AB.detach())
        self.loss_D_fake = self.criterionGAN(pred_fake, False)
        real_AB = torch.cat((self.real_A, self.real_B), 1)
        pred_real = self.netD(real_AB)
        self.loss_D_real = self.criterionGAN(pred_real, True)
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        self.loss_D.backward()

    def optimize_parameters(self):
        self.forward()
        self.optimizer_D.zero_grad()
        self.backward_D()
        self.optimizer_D.step()

    def save_networks(self, epoch):
        torch.save(self.netD.state_dict(), os.path.join(self.save_dir, f"{epoch}_net_D.pth"))

    def load_networks(self, epoch):
        self.netD.load_state_dict(torch.load(os.path.join(self.save_dir, f"{epoch}_net_D.pth")))

    def setup(self, opt):  # upstream at 2a7afba loads here directly, not through load_networks
        if opt.continue_train:
            self.netD.load_state_dict(torch.load(os.path.join(self.save_dir, f"{opt.epoch}_net_D.pth")))


Model = p2p_model.make_model_class(MiniPix2Pix)


def parse(argv, tmp_path=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--gan_mode", default="vanilla")
    parser = Model.modify_commandline_options(parser, True)
    opt = parser.parse_args(argv)
    opt.isTrain = True
    opt.continue_train, opt.epoch, opt.load_iter = False, "latest", 0
    opt.save_dir = str(tmp_path or ".")
    return opt


def batch(seed=1, b=4):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(b, 3, 16, 16, generator=g) * 2 - 1, "B": torch.rand(b, 3, 16, 16, generator=g) * 2 - 1}


def d_grads(model):
    return [p.grad.clone() for p in model.netD.parameters()]


# -- flags ------------------------------------------------------------------------------------


def test_flags_parse_to_session_arguments():
    opt = parse(["--nda", "jigsaw", "--nda_weight", "0.5", "--nda_mode", "replace", "--nda_schedule", "constant",
                 "--nda_seed", "3"])
    assert opt.lambda_L1 == 100.0  # upstream's own options are still there
    kwargs = p2p_options.session_kwargs(opt)
    assert kwargs == {"transform": "jigsaw", "weight": 0.5, "mode": "replace", "schedule": "constant", "seed": 3}
    actions = Model.modify_commandline_options(argparse.ArgumentParser(), True)._actions
    declared = [a.option_strings[0] for a in actions if a.option_strings and a.option_strings[0].startswith("--nda")]
    assert sorted(declared) == sorted(p2p_options.FLAGS)


def test_no_flags_keeps_upstream_and_test_time_has_none():
    assert p2p_options.session_kwargs(parse([])) == {}
    parser = Model.modify_commandline_options(argparse.ArgumentParser(), False)
    assert not any(a.dest.startswith("nda") for a in parser._actions)


@pytest.mark.parametrize("argv, match", [
    (["--nda_weight", "0.5"], "--nda_weight need"),
    (["--nda", "jigsaw", "--nda_weight", "1.5"], "--nda_weight"),
    (["--nda", "no-such-transform"], "--nda"),
    (["--nda", "jigsaw", "--gan_mode", "wgangp"], "--gan_mode"),
])
def test_bad_flags_name_the_flag(argv, match):
    with pytest.raises(ValueError, match=match):
        p2p_options.session_kwargs(parse(argv))


def test_bad_mode_is_an_argparse_error():
    with pytest.raises(SystemExit):
        parse(["--nda", "jigsaw", "--nda_mode", "both"])


# -- the loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_weight_zero_is_bit_identical_to_upstream(tmp_path, gan_mode):
    data = batch()
    plain = MiniPix2Pix(parse(["--gan_mode", gan_mode], tmp_path))
    nda = Model(parse(["--gan_mode", gan_mode, "--nda", "jigsaw", "--nda_weight", "0"], tmp_path))
    for m in (plain, nda):
        m.set_input(data)
        m.forward()
        m.backward_D()
    assert torch.equal(plain.loss_D, nda.loss_D)
    for a, b in zip(d_grads(plain), d_grads(nda)):
        assert torch.equal(a, b)
    assert "D_NDA" in nda.loss_names and "D_NDA" not in plain.loss_names


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_weighted_negative_term_has_its_weight(tmp_path, gan_mode):
    w = 0.75
    m = Model(parse(["--gan_mode", gan_mode, "--nda", "jigsaw", "--nda_weight", str(w), "--nda_seed", "5"], tmp_path))
    m.set_input(batch())
    m.forward()
    m.backward_D()
    # slow reference: the same negatives (same seed), the loss written out by hand
    neg_B, _ = Model(parse(["--nda", "jigsaw", "--nda_seed", "5"], tmp_path)).nda.negatives(m.real_B, step=0)
    assert not torch.equal(neg_B, m.real_B)
    crit = GANLossRef(gan_mode)
    with torch.no_grad():
        d = m.netD
        fake = crit(d(torch.cat((m.real_A, m.fake_B), 1)), False)
        neg = crit(d(torch.cat((m.real_A, neg_B), 1)), False)
        real = crit(d(torch.cat((m.real_A, m.real_B), 1)), True)
    expected = 0.5 * (real + (1 - w) * fake + w * neg)
    torch.testing.assert_close(m.loss_D.detach(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(m.loss_D_NDA.detach(), neg)
    # the negative term moves the loss (the test would not pass with w ignored)
    assert not torch.allclose(expected, 0.5 * (real + fake))


def test_replace_mode_one_d_pass_and_expected_loss(tmp_path):
    m = Model(parse(["--nda", "jigsaw", "--nda_weight", "0.5", "--nda_mode", "replace"], tmp_path))
    calls = []
    m.netD.register_forward_hook(lambda *a: calls.append(1))
    m.set_input(batch())
    m.forward()
    m.backward_D()
    assert len(calls) == 2  # fake-side (mixed) + real, no extra pass
    # In expectation over the coins the fake side is (1 - w) * L_fake + w * L_neg: with w -> 0 it is L_fake.
    m0 = Model(parse(["--nda", "jigsaw", "--nda_weight", "0", "--nda_mode", "replace"], tmp_path))
    plain = MiniPix2Pix(parse([], tmp_path))
    for x in (m0, plain):
        x.set_input(batch())
        x.forward()
        x.backward_D()
    assert torch.equal(m0.loss_D, plain.loss_D)


def test_replace_rows_are_negative_pairs(tmp_path):
    m = Model(parse(["--nda", "jigsaw", "--nda_weight", "0.9", "--nda_mode", "replace", "--nda_seed", "2"], tmp_path))
    seen = []
    m.netD.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    m.set_input(batch(b=16))
    m.forward()
    m.backward_D()
    mixed = seen[0]
    assert torch.equal(mixed[:, :3], m.real_A)  # the condition is always the real A
    fake_rows = (mixed[:, 3:] == m.fake_B.detach()).flatten(1).all(1)
    assert 0 < int((~fake_rows).sum()) < 16  # with w = 0.9 most (not all) rows are negatives
    # the logged loss_D_NDA is the fake-side loss (BCE to "fake") of the negative rows only
    with torch.no_grad():
        pred = m.netD(mixed)
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(
            pred, torch.zeros_like(pred), reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(m.loss_D_NDA, per_row[~fake_rows].mean())


# -- steps and checkpoints --------------------------------------------------------------------


def test_state_saved_beside_networks_and_restored(tmp_path):
    argv = ["--nda", "jigsaw", "--nda_schedule", "linear:steps=10"]
    m = Model(parse(argv, tmp_path))
    for _ in range(3):
        m.set_input(batch())
        m.optimize_parameters()
    assert m.nda_step == 3
    m.save_networks("latest")
    assert (tmp_path / STATE_FILE.format(epoch="latest")).is_file()
    opt = parse(argv, tmp_path)
    opt.continue_train = True
    resumed = Model(opt)
    resumed.setup(opt)  # --continue_train
    assert resumed.nda_step == 3
    again = Model(parse(argv, tmp_path))
    again.load_networks("latest")
    assert again.nda_step == 3
    assert resumed.nda.weight(resumed.nda_step) == m.nda.weight(m.nda_step)
    # the negatives' generator continues too
    x = batch()["B"]
    assert torch.equal(m.nda.negatives(x, step=3)[0], resumed.nda.negatives(x, step=3)[0])


def test_old_checkpoint_without_nda_state_loads_with_a_warning(tmp_path):
    MiniPix2Pix(parse([], tmp_path)).save_networks("latest")
    m = Model(parse(["--nda", "jigsaw"], tmp_path))
    with pytest.warns(UserWarning, match="no NDA state"):
        m.load_networks("latest")
    assert m.nda_step == 0


def test_corrupt_state_file_is_refused(tmp_path):
    m = Model(parse(["--nda", "jigsaw"], tmp_path))
    m.save_networks("latest")
    torch.save({"something": 1}, tmp_path / STATE_FILE.format(epoch="latest"))
    with pytest.raises(ValueError, match="not an NDA state file"):
        Model(parse(["--nda", "jigsaw"], tmp_path)).load_networks("latest")


def test_make_model_class_refuses_non_class():
    with pytest.raises(TypeError, match="base must be a class"):
        p2p_model.make_model_class("Pix2PixModel")


def test_class_name_is_found_the_upstream_way():
    # upstream: target = name.replace('_', '') + 'model', compared with cls.__name__.lower()
    assert Model.__name__.lower() == "pix2pix_nda".replace("_", "") + "model"
    assert issubclass(Model, MiniPix2Pix)
