"""Contract tests of nda_plugins.adapters.biggan (no upstream code: a tiny G_D with upstream's
interface stands in for BigGAN-PyTorch's)."""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nda_plugins import NDASession
from nda_plugins.adapters.biggan import options, training
from nda_plugins.adapters.biggan.training import NDAGD

B, C, R, N_CLASSES = 6, 3, 8, 4


# -- a stand-in for upstream's G, D and G_D (same call signatures) ----------------------------


class TinyG(nn.Module):
    dim_z = 5

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(N_CLASSES, 3)
        self.fc = nn.Linear(self.dim_z + 3, C * R * R)

    def forward(self, z, y_emb):
        return torch.tanh(self.fc(torch.cat([z, y_emb], 1))).view(-1, C, R, R)


class TinyD(nn.Module):
    """Projection D as upstream's: ``linear(h) + sum(embed(y) * h)``; records its inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(C, 4, 3, padding=1)
        self.linear = nn.Linear(4, 1)
        self.embed = nn.Embedding(N_CLASSES, 4)
        self.calls = []

    def forward(self, x, y):
        self.calls.append((x.detach().clone(), y.clone()))
        h = torch.relu(self.conv(x)).sum([2, 3])
        return self.linear(h) + (self.embed(y) * h).sum(1, keepdim=True)


class TinyGD(nn.Module):
    """Upstream's G_D contract: G under grad only for G steps; one D pass on cat(fake, real)."""

    def __init__(self, G, D):
        super().__init__()
        self.G, self.D = G, D

    def forward(self, z, gy, x=None, dy=None, train_G=False, return_G_z=False, split_D=False):
        with torch.set_grad_enabled(train_G):
            g_z = self.G(z, self.G.shared(gy))
        if x is None:
            return self.D(g_z, gy)
        out = self.D(torch.cat([g_z, x]), torch.cat([gy, dy]))
        return torch.split(out, [g_z.shape[0], x.shape[0]])


def hinge_reference(d_fake, d_real):
    """The hinge D loss of BigGAN (Miyato et al.; Lim & Ye), written out: (real term, fake term)."""
    return torch.mean(F.relu(1.0 - d_real)), torch.mean(F.relu(1.0 + d_fake))


def loss_hinge_dis(d_fake, d_real):  # named as upstream's, so loss_kind() recognises it
    return hinge_reference(d_fake, d_real)


def loss_dcgan_dis(d_fake, d_real):
    return torch.mean(F.softplus(-d_real)), torch.mean(F.softplus(d_fake))


def make(mode="weighted", weight=0.75, seed=0, start_epoch=0, epoch=0, parallel=False):
    torch.manual_seed(0)
    G, D = TinyG(), TinyD()
    gd = TinyGD(G, D)
    if parallel:
        gd = nn.DataParallel(gd)
    state_dict = {"itr": 0, "epoch": epoch}
    session = NDASession(transform="jigsaw", weight=weight, mode=mode, seed=seed)
    return NDAGD(gd, session, state_dict=state_dict, start_epoch=start_epoch), gd, state_dict


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, TinyG.dim_z, generator=g)
    gy = torch.randint(0, N_CLASSES, (B,), generator=g)
    x = torch.rand(B, C, R, R, generator=g) * 2 - 1
    dy = torch.randint(0, N_CLASSES, (B,), generator=g)
    return z, gy, x, dy


def d_step(wrapper, loss_fn=loss_hinge_dis):
    z, gy, x, dy = batch()
    d_fake, d_real = wrapper(z, gy, x, dy, train_G=False)
    lr, lf = loss_fn(d_fake, d_real)
    return training.d_losses(wrapper, d_fake, d_real, lr, lf, loss_fn=loss_fn)


# -- flags --------------------------------------------------------------------------------------


def parser():
    return options.add_arguments(argparse.ArgumentParser())


def test_flags_parse_with_the_papers_defaults():
    cfg = vars(parser().parse_args(["--nda", "jigsaw:grid=2"]))
    assert cfg["nda"] == "jigsaw:grid=2" and cfg["nda_weight"] == 0.75 and cfg["nda_mode"] == "weighted"
    assert cfg["nda_schedule"] == "constant" and cfg["nda_start_epoch"] == 0 and cfg["unconditional"] is False
    kw = options.session_kwargs({**cfg, "seed": 3})
    assert kw == {"transform": "jigsaw:grid=2", "weight": 0.75, "mode": "weighted", "schedule": "constant", "seed": 3}
    assert options.session_kwargs(vars(parser().parse_args([]))) == {}
    assert set(options.FLAGS) | set(options.EXTRA_FLAGS) == {
        a.option_strings[0] for a in parser()._actions if a.option_strings and a.dest != "help"}


@pytest.mark.parametrize("argv", [["--nda_weight", "1.0"], ["--nda_weight", "x"], ["--nda_mode", "both"],
                                  ["--nda_start_epoch", "-1"]])
def test_bad_flag_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--nda", "jigsaw", *argv])
    assert argv[0] in capsys.readouterr().err


def test_bad_transform_names_the_flag():
    cfg = vars(parser().parse_args(["--nda", "nosuch"]))
    with pytest.raises(ValueError, match="^--nda: "):
        options.session_kwargs(cfg)
    with pytest.raises(SystemExit, match="--nda"):
        training.configure(cfg)
    cfg = vars(parser().parse_args(["--nda", "jigsaw", "--nda_schedule", "nosuch"]))
    with pytest.raises(ValueError, match="^--nda_schedule: "):
        options.session_kwargs(cfg)


def test_unconditional_sets_one_class_and_zero_labels():
    cfg = {**vars(parser().parse_args(["--unconditional"])), "n_classes": 10}
    training.configure(cfg)
    assert cfg["n_classes"] == 1
    y = torch.tensor([3, 1, 2])
    assert torch.equal(training.labels(y, cfg), torch.zeros(3, dtype=torch.long))
    assert training.labels(y, {"unconditional": False}) is y


def test_without_nda_every_call_site_is_a_no_op():
    cfg = vars(parser().parse_args([]))
    gd = TinyGD(TinyG(), TinyD())
    state = {"epoch": 0}
    training.prepare_state(state, cfg)
    assert state == {"epoch": 0}
    assert training.wrap(gd, state, cfg) is gd
    lr, lf = torch.tensor(1.0), torch.tensor(2.0)
    assert training.d_losses(gd, None, None, lr, lf, loss_fn=loss_hinge_dis) == (lr, lf)
    assert training.step(gd) == {}


# -- the loss -----------------------------------------------------------------------------------


def test_loss_kinds_follow_upstreams_loss_function():
    assert training.loss_kind(loss_hinge_dis) == "hinge"
    assert training.loss_kind(loss_dcgan_dis) == "logistic"
    with pytest.raises(ValueError, match="loss_fn must be one of"):
        training.loss_kind(lambda a, b: (a, b))


@pytest.mark.parametrize("how", ["weight0", "curriculum"])
def test_w0_is_upstreams_step_bit_for_bit(how):
    wrapper, gd, _ = make(weight=0.0) if how == "weight0" else make(start_epoch=2, epoch=1)
    got = d_step(wrapper)
    z, gy, x, dy = batch()
    torch.manual_seed(0)
    ref_gd = TinyGD(TinyG(), TinyD())
    d_fake, d_real = ref_gd(z, gy, x, dy)
    expected = hinge_reference(d_fake, d_real)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert wrapper.pending is None and len(gd.D.calls) == 1  # no negative pass


@pytest.mark.parametrize("loss_fn,term", [(loss_hinge_dis, lambda v: F.relu(1 + v)), (loss_dcgan_dis, F.softplus)])
def test_weighted_negative_term_has_its_weight(loss_fn, term):
    """Against a slow reference: per-sample loops over D(fake) and D(T(x)) with the same negatives."""
    w = 0.75
    wrapper, gd, _ = make(weight=w)
    loss_real, loss_fake = d_step(wrapper, loss_fn)
    z, gy, x, dy = batch()
    neg, neg_y = NDASession(transform="jigsaw", weight=w, seed=0).negatives(x, dy, step=0)
    D, G = gd.D, gd.G
    with torch.no_grad():
        fake = G(z, G.shared(gy))
        f = sum(float(term(D(fake[i:i + 1], gy[i:i + 1]))) for i in range(B)) / B
        n = sum(float(term(D(neg[i:i + 1], neg_y[i:i + 1]))) for i in range(B)) / B
    assert float(loss_fake.detach()) == pytest.approx((1 - w) * f + w * n, rel=1e-5, abs=1e-6)
    # upstream's pass on cat(fake, real), then one on the negatives, which keep their sources' labels
    (d_in, d_y), (n_in, n_y) = gd.D.calls[:2]  # (the loops above appended their own calls)
    assert torch.equal(d_in, torch.cat([fake, x])) and torch.equal(d_y, torch.cat([gy, dy]))  # upstream's own pass
    assert torch.equal(n_in, neg) and torch.equal(n_y, dy)
    assert loss_fake.requires_grad


def test_weighted_split_D_runs_three_passes():
    wrapper, gd, _ = make()
    z, gy, x, dy = batch()
    wrapper(z, gy, x, dy, split_D=True)
    assert [c[0].shape[0] for c in gd.D.calls] == [B, B, B] and wrapper.pending is not None


def test_replace_mixes_rows_and_labels_in_one_pass():
    wrapper, gd, _ = make(mode="replace", weight=0.5)
    z, gy, x, dy = batch()
    torch.manual_seed(5)
    d_fake, d_real = wrapper(z, gy, x, dy)
    assert wrapper.pending is None and d_fake.shape == (B, 1) and len(gd.D.calls) == 1
    d_in, d_y = gd.D.calls[0]
    neg, _ = NDASession(transform="jigsaw", weight=0.5, seed=0).negatives(x, dy, step=0)
    fake = gd.G(z, gd.G.shared(gy)).detach()
    from_neg = (d_in[:B] == neg).flatten(1).all(1)
    from_fake = (d_in[:B] == fake).flatten(1).all(1)
    assert torch.equal(from_neg | from_fake, torch.ones(B, dtype=torch.bool))
    assert torch.equal(d_y[:B], torch.where(from_neg, dy, gy))  # a replaced row carries its source's label
    # over many steps about w of the rows are replaced
    hits = 0
    for _ in range(40):
        gd.D.calls.clear()
        wrapper(z, gy, x, dy)
        hits += int((~(gd.D.calls[0][0][:B] == fake).flatten(1).all(1)).sum())
    assert 0.35 < hits / (40 * B) < 0.65


def test_G_steps_are_untouched():
    wrapper, gd, _ = make()
    z, gy, _, _ = batch()
    out = wrapper(z, gy, train_G=True)
    assert out.shape == (B, 1) and out.requires_grad and len(gd.D.calls) == 1 and wrapper.pending is None


def test_dataparallel_is_wrapped_as_upstream_uses_it():
    wrapper, gd, _ = make(parallel=True)
    loss_real, loss_fake = d_step(wrapper)
    assert isinstance(wrapper.gd, nn.DataParallel) and wrapper.D is gd.module.D
    ref, ref_gd, _ = make()
    assert torch.allclose(loss_fake, d_step(ref)[1])


# -- state across checkpoints -------------------------------------------------------------------


def test_state_goes_into_upstreams_state_dict_and_comes_back():
    cfg = {**vars(parser().parse_args(["--nda", "jigsaw", "--nda_schedule", "linear:steps=10"])), "seed": 0}
    state = {"itr": 0, "epoch": 0, "config": cfg}
    training.prepare_state(state, cfg)
    assert state["nda_plugins"] is None  # the slot load_weights fills
    gd = TinyGD(TinyG(), TinyD())
    wrapper = training.wrap(gd, state, cfg)
    for _ in range(3):
        d_step(wrapper)
        assert training.step(wrapper) == {"NDA_w": pytest.approx(wrapper.session.weight(wrapper.session.num_advances - 1))}
    saved = state["nda_plugins"]
    assert saved["version"] == 1 and saved["session"]["nda_plugins.session"]["num_advances"] == 3
    resumed_state = {"itr": 3, "epoch": 0, "nda_plugins": saved}
    resumed = training.wrap(TinyGD(TinyG(), TinyD()), resumed_state, cfg)
    assert resumed.session.num_advances == 3 and resumed.weight() == wrapper.weight()
    # a checkpoint written without NDA (no key, or the empty slot) starts NDA at step 0
    assert training.wrap(TinyGD(TinyG(), TinyD()), {"epoch": 0}, cfg).session.num_advances == 0
    # a slot holding something else is refused, not silently ignored
    bad = {"epoch": 0, "nda_plugins": {"version": 99}}
    with pytest.raises(ValueError, match="unknown format"):
        training.wrap(TinyGD(TinyG(), TinyD()), bad, cfg)


def test_curriculum_turns_nda_on_after_n_epochs():
    wrapper, gd, state = make(start_epoch=1, epoch=0)
    assert wrapper.weight() == 0.0
    state["epoch"] = 1
    assert wrapper.weight() == 0.75


def test_bad_wrapper_arguments():
    session = NDASession()
    with pytest.raises(TypeError, match="gd must be upstream's G_D"):
        NDAGD(nn.Linear(1, 1), session, state_dict={})
    with pytest.raises(ValueError, match="start_epoch must be an int >= 0"):
        NDAGD(TinyGD(TinyG(), TinyD()), session, state_dict={}, start_epoch=-1)


# -- launch scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("script,conditional", [("train_cifar10_nda.sh", False), ("train_cifar10_cond_nda.sh", True)])
def test_launch_scripts_hold_the_papers_cifar10_recipe(script, conditional):
    import re
    import shlex
    import subprocess
    from pathlib import Path

    import nda_plugins.adapters.biggan as pkg

    path = Path(pkg.__file__).parent / script
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0
    text = path.read_text()
    cmd = re.search(r'exec "\$PYTHON" train\.py \\\n(.*?)"\$@"', text, re.S).group(1).replace("\\\n", " ")
    p = parser()
    for flag in ("--dataset", "--batch_size", "--num_D_steps", "--G_lr", "--D_lr", "--experiment_name"):
        p.add_argument(flag)
    cfg, _ = p.parse_known_args(shlex.split(cmd))
    assert (cfg.batch_size, cfg.num_D_steps, cfg.G_lr, cfg.D_lr, cfg.dataset) == ("64", "4", "2e-4", "2e-4", "C10")
    assert (cfg.nda, cfg.nda_weight, cfg.unconditional) == ("jigsaw", 0.75, not conditional)
    assert "nda_prepare biggan " in text
