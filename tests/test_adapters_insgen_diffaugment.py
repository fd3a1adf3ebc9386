"""The InsGen adapter (run_D interception) and the DiffAugment adapter's options, on small tensors
with fake upstream losses (no upstream code)."""

from __future__ import annotations

import pytest
import torch

from nda_plugins.adapters import diffaugment, insgen
from nda_plugins.adapters.diffaugment import options as da_options
from nda_plugins.adapters.insgen import options as ig_options
from nda_plugins.adapters.insgen.mixin import NDAInterceptMixin

C, H, W, CDIM = 3, 4, 4, 2
sp = torch.nn.functional.softplus


class FakeD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, C * H * W))
        self.cw = torch.nn.Parameter(torch.tensor([0.5, -0.25]))

    def forward(self, img, c):
        return (img.flatten(1) @ self.w + c @ self.cw).unsqueeze(1)


class FakeInsGenLoss:
    """Follows InsGen's D step: fake run_D (sync=False) + backward, real run_D (sync) + an extra
    term computed from D directly + backward. Takes InsGen's extra keyword arguments."""

    def __init__(self, device, D=None):
        self.D, self.calls, self.reports, self.kwargs_seen = D, [], [], []

    def run_G(self, z, c, sync):
        return z[:, : C * H * W].reshape(-1, C, H, W), None

    def run_D(self, img, c, sync):
        self.calls.append((img.detach().clone(), c.detach().clone(), sync))
        return self.D(img.flip(-1), c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain, cl_phases=None, D_ema=None):
        self.kwargs_seen.append((phase, cl_phases, D_ema))
        if phase not in ("Dmain", "Dboth"):
            return
        gen_img, _ = self.run_G(gen_z, gen_c, sync=False)
        gen_logits = self.run_D(gen_img, gen_c, sync=False)
        sp(gen_logits).mean().mul(gain).backward()
        real_logits = self.run_D(real_img.detach(), real_c, sync=sync)
        extra = 0.1 * self.D(real_img, real_c).mean()  # stands for InsGen's contrastive term
        (sp(-real_logits).mean() + extra).mul(gain).backward()


class Loss(NDAInterceptMixin, FakeInsGenLoss):
    def _report(self, name, value):
        self.reports.append(name)


def batch(b=4):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(b, C, H, W, generator=g) * 2 - 1
    real_c = torch.nn.functional.one_hot(torch.arange(b) % CDIM, CDIM).float()
    gen_z = torch.randn(b, C * H * W, generator=g)
    gen_c = torch.nn.functional.one_hot((torch.arange(b) + 1) % CDIM, CDIM).float()
    return real, real_c, gen_z, gen_c


def make(**nda):
    kw = dict(transform="jigsaw", weight=0.75, batch_size=4, seed=0)
    kw.update(nda)
    return Loss("cpu", D=FakeD(), nda_kwargs=kw)


def step(loss, phase="Dmain", sync=True, b=4, **kwargs):
    real, real_c, gen_z, gen_c = batch(b)
    loss.accumulate_gradients(phase=phase, real_img=real, real_c=real_c, gen_z=gen_z, gen_c=gen_c, sync=sync,
                              gain=2, **kwargs)
    return real, real_c, gen_z, gen_c


def test_weighted_gradient_matches_the_nda_objective_and_keeps_upstream_terms():
    loss = make()
    real, real_c, gen_z, gen_c = step(loss, cl_phases={"x": 1}, D_ema="ema")
    assert loss.kwargs_seen == [("Dmain", {"x": 1}, "ema")]  # InsGen's extra arguments pass through
    (gen_in, gc, s1), (neg_in, nc, s2), (real_in, rc, s3) = loss.calls
    assert (s1, s2, s3) == (False, False, True)
    assert torch.equal(nc, real_c) and torch.equal(gc, gen_c)
    D = FakeD()
    aug = lambda x: x.flip(-1)
    gen_img = gen_z[:, : C * H * W].reshape(-1, C, H, W)
    expected = 2 * (0.25 * sp(D(aug(gen_img), gen_c)).mean() + 0.75 * sp(D(aug(neg_in), real_c)).mean()
                    + sp(-D(aug(real), real_c)).mean() + 0.1 * D(real, real_c).mean())
    expected.backward()
    torch.testing.assert_close(loss.D.w.grad, D.w.grad)
    torch.testing.assert_close(loss.D.cw.grad, D.cw.grad)
    assert {"NDA/loss", "NDA/weight", "NDA/signs/neg"} <= set(loss.reports)


def test_replace_is_one_pass_with_mixed_labels():
    loss = make(mode="replace", weight=0.5)
    real, real_c, gen_z, gen_c = step(loss, b=256)
    assert len(loss.calls) == 2
    mixed, mixed_c, _ = loss.calls[0]
    gen_img = gen_z[:, : C * H * W].reshape(-1, C, H, W)
    kept = (mixed == gen_img).flatten(1).all(1)
    assert 0.35 < 1 - kept.float().mean().item() < 0.65
    torch.testing.assert_close(mixed_c, torch.where(kept[:, None], gen_c, real_c))


def test_real_logits_feed_anda_and_other_phases_untouched():
    loss = make(weight=0.5, anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9)
    with torch.no_grad():
        loss.D.w.zero_()
        loss.D.cw.fill_(1.0)
    step(loss)
    loss.nda_advance()
    assert loss.nda.alpha == pytest.approx(0.1) and loss.nda_step == 1
    n = len(loss.calls)
    for phase in ("Gmain", "Greg", "Dreg"):
        step(loss, phase=phase)
    assert len(loss.calls) == n and loss._nda_round is None
    assert loss.run_D(torch.zeros(1, C, H, W), torch.zeros(1, CDIM), True).shape == (1, 1)  # outside a D step: plain


def test_without_nda_upstream_runs_unchanged():
    loss = Loss("cpu", D=FakeD(), nda_kwargs=None)
    step(loss)
    assert len(loss.calls) == 2 and loss.nda is None and loss.nda_advance() is None


def args(loss):
    return {"batch_size": 8, "random_seed": 0, "loss_kwargs": {"class_name": loss}}


@pytest.mark.parametrize("upstream, ours", sorted(insgen.LOSS_CLASSES.items()))
def test_insgen_options_select_the_subclass_of_the_chosen_loss(upstream, ours):
    a = args(upstream)
    assert ig_options.configure(a, nda="jigsaw", anda=True) == "-ndajigsaw-anda"
    assert a["loss_kwargs"]["class_name"] == ours and a["loss_kwargs"]["nda_kwargs"]["anda"] is True


def test_insgen_options_refuse_unknown_loss_and_keep_flags():
    with pytest.raises(ig_options.NDAOptionError, match="supports the losses"):
        ig_options.configure(args("x.Y"), nda="jigsaw")
    assert ig_options.configure(args("x.Y"), nda=None) == ""
    assert ig_options.FLAGS is da_options.FLAGS


def test_diffaugment_options_select_the_forks_loss():
    a = args("training.loss.StyleGAN2Loss")
    a["loss_kwargs"]["diffaugment"] = "color,translation,cutout"
    da_options.configure(a, nda="cutout", nda_weight=0.5)
    assert a["loss_kwargs"]["class_name"] == diffaugment.LOSS_CLASS
    assert a["loss_kwargs"]["diffaugment"] == "color,translation,cutout"
