"""The StyleGAN2-ADA adapter's logic on small tensors, with a fake upstream loss (no upstream code).

The fake base mimics ``training.loss.StyleGAN2Loss``'s interface: ``run_G``, ``run_D`` (which
applies an "augment" and records every call) and ``accumulate_gradients`` for the phases the
mixin delegates.
"""

from __future__ import annotations

import json

import click
import pytest
import torch

from nda_plugins.adapters.stylegan2_ada import LOSS_CLASS, options, training
from nda_plugins.adapters.stylegan2_ada.mixin import NDALossMixin

C, H, W, CDIM = 3, 4, 4, 2


class FakeD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, C * H * W))
        self.cw = torch.nn.Parameter(torch.tensor([0.5, -0.25]))

    def forward(self, img, c):
        return (img.flatten(1) @ self.w + c @ self.cw).unsqueeze(1)  # (B, 1)


class FakeUpstreamLoss:
    """What the mixin needs from StyleGAN2Loss."""

    def __init__(self, device, G_mapping=None, G_synthesis=None, D=None, augment_pipe=None, r1_gamma=10):
        self.device, self.D, self.r1_gamma = device, D, r1_gamma
        self.calls = []  # (kind, input, c, sync)
        self.delegated = []
        self.reports = []

    def run_G(self, z, c, sync):
        img = z[:, : C * H * W].reshape(-1, C, H, W) * 1.0
        self.calls.append(("G", img, c, sync))
        return img, None

    def run_D(self, img, c, sync):
        augmented = img.flip(-1)  # stands for ADA's augment_pipe: applied to every D input
        self.calls.append(("D", img.detach().clone(), c.detach().clone(), sync))
        return self.D(augmented, c)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        self.delegated.append((phase, sync))


class Loss(NDALossMixin, FakeUpstreamLoss):
    def _report(self, name, value):
        self.reports.append(name)


def batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(b, C, H, W, generator=g) * 2 - 1
    real_c = torch.nn.functional.one_hot(torch.arange(b) % CDIM, CDIM).float()
    gen_z = torch.randn(b, C * H * W, generator=g)
    gen_c = torch.nn.functional.one_hot((torch.arange(b) + 1) % CDIM, CDIM).float()
    return real, real_c, gen_z, gen_c


def make(mode="weighted", weight=0.75, anda=False, **extra):
    nda = dict(transform="jigsaw", weight=weight, mode=mode, anda=anda, batch_size=4, seed=0)
    nda.update(extra)
    return Loss("cpu", D=FakeD(), nda_kwargs=nda)


def run(loss, phase="Dmain", sync=True, b=4, seed=0):
    real, real_c, gen_z, gen_c = batch(b, seed)
    loss.accumulate_gradients(phase=phase, real_img=real, real_c=real_c, gen_z=gen_z, gen_c=gen_c, sync=sync, gain=1)
    return real, real_c, gen_z, gen_c


def test_without_nda_everything_is_delegated():
    loss = Loss("cpu", D=FakeD(), nda_kwargs=None)
    assert loss.nda is None
    for phase in ("Gmain", "Greg", "Dmain", "Dreg", "Dboth"):
        run(loss, phase=phase)
    assert [p for p, _ in loss.delegated] == ["Gmain", "Greg", "Dmain", "Dreg", "Dboth"]
    assert loss.calls == []


def test_g_phases_and_dreg_stay_upstream():
    loss = make()
    for phase in ("Gmain", "Greg", "Gboth", "Dreg"):
        run(loss, phase=phase)
    assert [p for p, _ in loss.delegated] == ["Gmain", "Greg", "Gboth", "Dreg"]


def test_weighted_routes_negatives_through_run_D_with_labels_and_sync():
    loss = make("weighted", 0.75)
    real, real_c, gen_z, gen_c = run(loss, sync=True)
    d_calls = [c for c in loss.calls if c[0] == "D"]
    assert len(d_calls) == 3  # fake, negative, real
    (_, fake_in, fake_c, fake_sync), (_, neg_in, neg_c, neg_sync), (_, real_in, rc, real_sync) = d_calls
    assert torch.equal(fake_c, gen_c) and torch.equal(neg_c, real_c) and torch.equal(rc, real_c)
    assert fake_sync is False and neg_sync is False and real_sync is True  # DDP sync only on the real pass
    assert torch.equal(real_in, real)
    assert neg_in.shape == real.shape and not torch.equal(neg_in, real)
    # jigsaw keeps each image's pixels: the negative of row i is a permutation of real row i
    assert torch.allclose(neg_in.flatten(1).sort(1).values, real.flatten(1).sort(1).values)
    assert {"NDA/scores/neg", "NDA/signs/neg", "NDA/weight", "Loss/D/loss", "Loss/signs/real"} <= set(loss.reports)


def test_weighted_gradient_is_the_nda_objective():
    loss = make("weighted", 0.75)
    real, real_c, gen_z, gen_c = run(loss)
    grad = loss.D.w.grad.clone()
    neg = [c for c in loss.calls if c[0] == "D"][1][1]
    D = FakeD()
    sp = torch.nn.functional.softplus
    aug = lambda x: x.flip(-1)
    gen_img = gen_z[:, : C * H * W].reshape(-1, C, H, W)
    expected = (0.25 * sp(D(aug(gen_img), gen_c)).mean() + 0.75 * sp(D(aug(neg), real_c)).mean()
                + sp(-D(aug(real), real_c)).mean())
    expected.backward()
    torch.testing.assert_close(grad, D.w.grad)


def test_replace_mixes_rows_and_labels_in_one_pass():
    loss = make("replace", 0.5)
    real, real_c, gen_z, gen_c = run(loss, b=512)
    d_calls = [c for c in loss.calls if c[0] == "D"]
    assert len(d_calls) == 2  # mixed fakes, real: no extra pass
    _, mixed, mixed_c, sync = d_calls[0]
    gen_img = gen_z[:, : C * H * W].reshape(-1, C, H, W)
    from_gen = (mixed == gen_img).flatten(1).all(1)
    assert 0.4 < 1 - from_gen.float().mean().item() < 0.6  # about w of the rows replaced
    # a replaced row carries its source's label, a kept row the generator's
    torch.testing.assert_close(mixed_c, torch.where(from_gen[:, None], gen_c, real_c))
    assert sync is False and "NDA/replaced" in loss.reports


def test_zero_weight_skips_negatives():
    loss = make("weighted", 0.75, schedule="linear:steps=10")  # ramps from 0
    run(loss)
    assert len([c for c in loss.calls if c[0] == "D"]) == 2


def test_dboth_leaves_sync_and_r1_to_upstream_dreg():
    loss = make()
    run(loss, phase="Dboth", sync=True)
    syncs = [c[3] for c in loss.calls if c[0] == "D"]
    assert syncs == [False, False, False]
    assert loss.delegated == [("Dreg", True)]


def test_dboth_without_r1_syncs_on_the_real_pass():
    loss = make()
    loss.r1_gamma = 0
    run(loss, phase="Dboth", sync=True)
    assert [c[3] for c in loss.calls if c[0] == "D"] == [False, False, True]
    assert loss.delegated == []


def test_anda_alpha_follows_sign_of_d_on_reals_and_moves_w():
    loss = make("weighted", 0.5, anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9)
    with torch.no_grad():
        loss.D.w.zero_()
        loss.D.cw.fill_(1.0)  # D(real) = sum(c) = 1 > 0: "overfitting", alpha must rise
    assert loss.nda.alpha == 0.0
    run(loss)
    training.step(loss)
    assert loss.nda_step == 1
    assert loss.nda.alpha == pytest.approx(0.1)
    assert loss.nda.weight(loss.nda_step) == pytest.approx(0.5 * 0.9)
    assert training.tick_fields(loss) == ["nda_w 0.450", "anda_alpha 0.100"]


class FakePipe:
    def __init__(self, p):
        self.p = torch.tensor(p)


def test_snapshot_and_resume_continue_alpha_step_and_ada_p():
    loss = make("weighted", 0.5, anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9)
    for _ in range(3):
        run(loss)
        training.step(loss)
    data = {}
    training.snapshot(data, loss, FakePipe(0.3))
    assert data["nda_plugins"]["step"] == 3 and data["nda_plugins"]["ada_p"] == pytest.approx(0.3)

    fresh, pipe = make("weighted", 0.5, anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9), FakePipe(0.0)
    training.resume(fresh, resume_data=data, resuming=True, augment_pipe=pipe, ada_target=0.6)
    assert fresh.nda_step == 3 and fresh.nda.alpha == loss.nda.alpha
    assert float(pipe.p) == pytest.approx(0.3)
    # fixed p (no ADA target): the user's --p wins
    pipe2 = FakePipe(0.2)
    training.resume(make(anda=False), resume_data={"nda_plugins": dict(data["nda_plugins"], session=None)},
                    resuming=True, augment_pipe=pipe2, ada_target=None)
    assert float(pipe2.p) == pytest.approx(0.2)
    # not resuming, or a snapshot without our key: nothing happens
    assert training.resume(fresh, resume_data=None, resuming=False) is None
    assert training.resume(fresh, resume_data={"G": None}, resuming=True) is None


def test_resume_on_other_ranks_keeps_alpha_but_not_rank0s_generator():
    rank0 = make(anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9)
    run(rank0)
    training.step(rank0)
    data = {}
    training.snapshot(data, rank0)
    rank1 = make(anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9, seed=1)
    training.resume(rank1, resume_data=data, resuming=True, rank=1)
    assert rank1.nda_step == rank0.nda_step and rank1.nda.alpha == rank0.nda.alpha
    assert rank1.nda.seed == 1
    real = batch()[0]
    restored0 = make(anda=True, anda_interval=1, anda_kimg=0.04, anda_target=-0.9)
    training.resume(restored0, resume_data=data, resuming=True, rank=0)
    n0, _ = restored0.nda.negatives(real, step=1)
    n1, _ = rank1.nda.negatives(real, step=1)
    nr, _ = rank0.nda.negatives(real, step=1)
    assert torch.equal(n0, nr)  # rank 0 continues its own random stream exactly
    assert not torch.equal(n1, nr)


def test_resume_with_mismatched_flags_names_the_problem():
    loss = make(anda=True)
    data = {}
    training.snapshot(data, loss)
    with pytest.raises(ValueError, match="does not fit the current --nda/--anda flags"):
        training.resume(make(anda=False), resume_data=data, resuming=True)


def test_helpers_are_noops_without_nda():
    loss = Loss("cpu", D=FakeD(), nda_kwargs=None)
    training.step(loss)
    assert training.tick_fields(loss) == []
    data = {}
    training.snapshot(data, loss, None)
    assert data["nda_plugins"]["session"] is None and data["nda_plugins"]["ada_p"] is None


# -- options (the flags of the patched train.py) -------------------------------------------------


def args():
    return {"batch_size": 8, "random_seed": 3, "loss_kwargs": {"class_name": options.UPSTREAM_LOSS, "r1_gamma": 1.0}}


def test_configure_selects_loss_and_maps_flags_to_session_arguments():
    a = args()
    desc = options.configure(a, nda="jigsaw:grid=3", nda_weight=0.5, nda_mode="replace", nda_schedule=None,
                             anda=True, anda_lambda=0.6, anda_target=0.5, anda_interval=2, anda_kimg=100.0)
    assert a["loss_kwargs"]["class_name"] == LOSS_CLASS
    assert a["loss_kwargs"]["nda_kwargs"] == {
        "transform": "jigsaw:grid=3", "weight": 0.5, "mode": "replace", "anda": True, "anda_lambda": 0.6,
        "anda_target": 0.5, "anda_interval": 2, "anda_kimg": 100.0, "batch_size": 8, "seed": 3}
    json.dumps(a)  # training_options.json stays JSON
    assert desc == "-ndajigsaw-grid3-w0.5-replace-anda"


def test_configure_without_nda_changes_nothing():
    a = args()
    assert options.configure(a, nda=None, anda=False) == ""
    assert a == args()


@pytest.mark.parametrize("flags, hint", [
    ({"nda": None, "nda_weight": 0.5}, "--nda"),
    ({"nda": "jigsaw", "nda_weight": 1.5}, "--nda-weight"),
    ({"nda": "nope"}, "--nda"),
    ({"nda": "jigsaw", "anda": True, "anda_kimg": -1.0}, "--anda-kimg"),
    ({"nda": "jigsaw", "anda_lambda": 0.5}, "--anda-lambda"),
])
def test_bad_flags_raise_click_errors_naming_the_flag(flags, hint):
    with pytest.raises(options.NDAOptionError) as info:
        options.configure(args(), **flags)
    assert isinstance(info.value, ValueError) and isinstance(info.value, click.BadParameter)
    assert info.value.param_hint == hint


def test_configure_refuses_a_foreign_loss():
    a = args()
    a["loss_kwargs"]["class_name"] = "someone.else.Loss"
    with pytest.raises(options.NDAOptionError, match="another patch changed the loss"):
        options.configure(a, nda="jigsaw")


def test_make_session_seeds_per_rank_and_validates():
    from nda_plugins.adapters.stylegan2_ada.mixin import make_session

    assert make_session(None) is None and make_session({}) is None
    assert make_session({"transform": "jigsaw", "seed": 5}).seed == 5
    with pytest.raises(TypeError, match="nda_kwargs must be a dict"):
        make_session(["jigsaw"])
