"""nda_plugins.copgen: navigator, batched augmentations, minimax step, generators, offline pairs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nda_plugins import copgen


def tiny_generator(latent_dim: int = 8, size: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(latent_dim, 3 * size * size), nn.Unflatten(1, (3, size, size)), nn.Tanh())


def make_generator():  # a factory for load_generator("tests.test_copgen:make_generator")
    return tiny_generator()


# ------------------------------------------------------------------------------------------------
# Navigator and constraint
# ------------------------------------------------------------------------------------------------


def test_navigator_starts_small_and_scales_with_init_scale():
    z = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    small = copgen.Navigator(32)
    torch.manual_seed(0)
    big = copgen.Navigator(32, init_scale=1.0)
    ratio = (small.step(z).norm(dim=1) / z.norm(dim=1)).max()
    assert ratio < 0.02
    assert torch.allclose(big.step(z) * 1e-2, small.step(z), atol=1e-6)
    assert torch.equal(small(z), z + small.step(z))
    assert [m.out_features for m in small.net if isinstance(m, nn.Linear)] == [32, 32]


@pytest.mark.parametrize("kwargs, match", [
    ({"latent_dim": 0}, "latent_dim"), ({"latent_dim": 4, "init_scale": 0}, "init_scale"),
    ({"latent_dim": 4, "init_scale": 2.0}, "init_scale"),
])
def test_navigator_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        copgen.Navigator(**kwargs)


def test_consistency_penalty():
    step = torch.tensor([[0.3, 0.3], [2.0, 2.0]], requires_grad=True)  # RMS 0.3 and 2.0
    pen = copgen.consistency_penalty(step, radius=0.5)
    assert pen.item() == pytest.approx((2.0 - 0.5) ** 2 / 2)
    pen.backward()
    assert torch.equal(step.grad[0], torch.zeros(2)) and (step.grad[1] > 0).all()
    with pytest.raises(ValueError, match="radius"):
        copgen.consistency_penalty(step, radius=-1)


# ------------------------------------------------------------------------------------------------
# Augmentations
# ------------------------------------------------------------------------------------------------


def _identity_params(b: int) -> dict[str, torch.Tensor]:
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(b, 1, 1)
    ones, zeros = torch.ones(b), torch.zeros(b)
    return {"theta": theta, "brightness": ones, "contrast": ones, "saturation": ones, "hue": zeros,
            "gray": torch.zeros(b, dtype=torch.bool)}


def test_apply_augment_identity_flip_and_gray():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    params = _identity_params(3)
    assert torch.allclose(copgen.apply_augment(x, params), x, atol=1e-5)
    params["theta"][1, 0, 0] = -1.0  # horizontal flip of sample 1 only
    params["gray"][2] = True
    out = copgen.apply_augment(x, params)
    assert torch.allclose(out[0], x[0], atol=1e-5)
    assert torch.allclose(out[1], x[1].flip(-1), atol=1e-5)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    expected = ((x[2] + 1) / 2 * luma).sum(0) * 2 - 1
    assert torch.allclose(out[2], expected.expand(3, -1, -1), atol=1e-5)


def test_augment_is_reproducible_per_sample_and_batched():
    x = torch.rand(16, 3, 16, 16) * 2 - 1
    a = copgen.augment(x, generator=torch.Generator().manual_seed(3))
    b = copgen.augment(x, generator=torch.Generator().manual_seed(3))
    c = copgen.augment(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    # One parameter draw per sample: the batch op equals the per-sample op with sliced params.
    params = copgen.sample_augment_params(16, generator=torch.Generator().manual_seed(5))
    batched = copgen.apply_augment(x, params)
    for i in (0, 7, 15):
        one = copgen.apply_augment(x[i:i + 1], {k: v[i:i + 1] for k, v in params.items()})
        assert torch.allclose(batched[i:i + 1], one, atol=1e-6)
    assert torch.unique(params["theta"].flatten(1), dim=0).shape[0] == 16  # crops differ per sample
    assert copgen.augment(x, generator=torch.Generator().manual_seed(0), out_size=8).shape == (16, 3, 8, 8)


def test_augment_gradients_flow_to_z():
    G = tiny_generator()
    z = torch.randn(4, 8, requires_grad=True)
    copgen.augment(G(z), generator=torch.Generator().manual_seed(0)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_augment_bad_input():
    with pytest.raises(ValueError, match="images"):
        copgen.augment(torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="images"):
        copgen.augment(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------
# COPGen
# ------------------------------------------------------------------------------------------------


def _cop(**kwargs) -> copgen.COPGen:
    torch.manual_seed(0)
    return copgen.COPGen(tiny_generator(), latent_dim=8, estimator=copgen.Estimator(width=4, out_dim=8), **kwargs)


def test_generator_frozen_and_gradients_reach_navigator():
    cop = _cop()
    assert not any(p.requires_grad for p in cop.generator.parameters())
    out = cop.losses(torch.randn(6, 8), generator=torch.Generator().manual_seed(0))
    (-out["info_nce"]).backward()
    assert cop.navigator.net[2].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in cop.generator.parameters())
    assert math.isfinite(out["info_nce"].item())


def test_minimax_step_updates_each_side_with_its_own_loss():
    cop = _cop()
    opt_e = torch.optim.Adam(cop.estimator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_n = torch.optim.Adam(cop.navigator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    seen = {}

    def update(opt, name):
        def fn(loss):
            opt.zero_grad()
            loss.backward()
            seen[name] = loss.detach()
            opt.step()
        return fn

    g0 = [p.clone() for p in cop.generator.parameters()]
    n0 = [p.clone() for p in cop.navigator.parameters()]
    e0 = [p.clone() for p in cop.estimator.parameters()]
    stats = cop.minimax_step(torch.randn(8, 8), update(opt_e, "est"), update(opt_n, "nav"),
                             generator=torch.Generator().manual_seed(0))
    # The navigator maximises what the estimator minimises (same views: equal magnitudes up to
    # the estimator's update in between).
    assert seen["est"] > 0 and seen["nav"] < 0
    assert all(torch.equal(a, b) for a, b in zip(g0, cop.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(n0, cop.navigator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(e0, cop.estimator.parameters()))
    assert all(p.requires_grad for p in cop.estimator.parameters())
    assert set(stats) >= {"loss_mi", "loss_navigator", "step_norm_mean", "step_norm_std", "consistency"}
    assert 0 < stats["step_norm_mean"] < 0.5


def test_navigator_pass_leaves_estimator_grads_alone():
    cop = _cop()
    grads = {}

    def est_update(loss):
        loss.backward()  # leave the gradients in place on purpose

    def nav_update(loss):
        before = [p.grad.clone() for p in cop.estimator.parameters()]
        loss.backward()
        grads["same"] = all(torch.equal(a, p.grad) for a, p in zip(before, cop.estimator.parameters()))

    cop.minimax_step(torch.randn(8, 8), est_update, nav_update, generator=torch.Generator().manual_seed(0))
    assert grads["same"]


def test_copgen_bad_args():
    with pytest.raises(TypeError, match="generator"):
        copgen.COPGen("nope", latent_dim=8)
    with pytest.raises(ValueError, match="latent_dim"):
        copgen.COPGen(tiny_generator())
    with pytest.raises(ValueError, match="temperature"):
        copgen.COPGen(tiny_generator(), latent_dim=8, temperature=0)
    with pytest.raises(ValueError, match="latent_dim=8"):
        _cop().losses(torch.randn(2, 5))


# ------------------------------------------------------------------------------------------------
# Generators and offline pairs
# ------------------------------------------------------------------------------------------------


def test_load_generator_module_factory_file_and_checkpoint(tmp_path):
    G = tiny_generator()
    assert copgen.load_generator(G) is G
    built = copgen.load_generator("tests.test_copgen:make_generator")
    assert isinstance(built, nn.Sequential)
    torch.save(G, tmp_path / "g.pt")
    assert torch.equal(copgen.load_generator(tmp_path / "g.pt")[0].weight, G[0].weight)
    torch.save({"state_dict": G.state_dict()}, tmp_path / "sd.pt")
    loaded = copgen.load_generator("tests.test_copgen:make_generator", checkpoint=tmp_path / "sd.pt")
    assert torch.equal(loaded[0].weight, G[0].weight)
    with pytest.raises(ValueError, match="no attribute"):
        copgen.load_generator("tests.test_copgen:missing")
    with pytest.raises(ValueError, match="existing file"):
        copgen.load_generator(str(tmp_path / "absent.pt"))
    with pytest.raises(TypeError, match="generator"):
        copgen.load_generator(3)


def test_default_generator_is_deterministic():
    a = copgen.default_generator(steps=2, size=16, z_dim=8, pool=48)
    b = copgen.default_generator(steps=2, size=16, z_dim=8, pool=48)
    z = torch.randn(2, 8)
    assert torch.equal(a(z), b(z)) and a(z).shape == (2, 3, 16, 16)


def test_generate_and_read_pairs(tmp_path):
    G, nav = tiny_generator(), copgen.Navigator(8, init_scale=1.0)
    out = copgen.generate_pairs(G, nav, tmp_path / "pairs", 5, seed=0, batch_size=2)
    anchors, positives = copgen.read_pairs(out)
    assert anchors.shape == positives.shape == (5, 3, 16, 16)
    latents = torch.load(out / "latents.pt")
    with torch.no_grad():
        expected = G(latents["z"])
    assert torch.allclose(anchors, expected, atol=1 / 127)  # uint8 quantisation
    assert torch.allclose(latents["z_new"], nav(latents["z"]).detach())
    assert not torch.equal(anchors, positives)
    with pytest.raises(ValueError, match="not an empty folder"):
        copgen.generate_pairs(G, nav, out, 2)
    with pytest.raises(ValueError, match="anchor/ and positive/"):
        copgen.read_pairs(tmp_path)
