"""NDASession: argument checks, the per-step calls, ANDA, and exact checkpoint round trips."""

from __future__ import annotations

import contextlib
import copy
import io

import pytest
import torch

import nda_plugins
from nda_plugins import NDASession, hookimpl, new_plugin_manager
from nda_plugins._manager import register
from nda_plugins.plugins import builtin_policy
from nda_plugins.schedules import AdaptiveAlpha


@pytest.fixture
def pm():
    return new_plugin_manager(autoload=False)


def make(pm, **kwargs):
    return NDASession(plugin_manager=pm, **kwargs)


def assert_state_equal(a, b, path="state"):
    """Recursive exact comparison of nested dicts of tensors and Python values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {set(a)} != {set(b)}"
        for key in a:
            assert_state_equal(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}"


# ----------------------------------------------------------------------------------------
# Constructor checks
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"weight": 1.0}, ValueError, ["weight", "[0, 1)", "1.0"]),
        ({"weight": -0.1}, ValueError, ["weight", "-0.1"]),
        ({"weight": "0.5"}, TypeError, ["weight", "str"]),
        ({"weight": True}, TypeError, ["weight", "bool"]),
        ({"mode": "mixed"}, ValueError, ["mode", "weighted", "replace", "mixed"]),
        ({"anda": 1}, TypeError, ["anda", "bool"]),
        ({"anda": True}, ValueError, ["batch_size", "anda"]),
        ({"anda": True, "batch_size": 8, "anda_lambda": 0.0}, ValueError, ["anda_lambda", "(0, 1)"]),
        ({"anda": True, "batch_size": 8, "anda_lambda": 1.0}, ValueError, ["anda_lambda", "1.0"]),
        ({"anda": True, "batch_size": 8, "weight": 0.0}, ValueError, ["anda_lambda", "weight"]),
        ({"anda_lambda": 0.5}, ValueError, ["anda_lambda", "anda=True"]),
        ({"anda_target": 1.5}, ValueError, ["anda_target", "1.5"]),
        ({"anda": True, "batch_size": 8, "anda_interval": 0}, ValueError, ["anda_interval", "0"]),
        ({"anda_kimg": 0.0}, ValueError, ["anda_kimg"]),
        ({"batch_size": 0}, ValueError, ["batch_size", "0"]),
        ({"batch_size": 2.5}, TypeError, ["batch_size", "float"]),
        ({"seed": -1}, ValueError, ["seed", "-1"]),
        ({"seed": 1.5}, TypeError, ["seed"]),
        ({"transform": "no_such_transform"}, ValueError, ["transform", "no_such_transform", "jigsaw"]),
        ({"transform": "jigsaw:bogus=1"}, TypeError, ["transform", "bogus"]),
        ({"transform": 3}, TypeError, ["transform", "int"]),
        ({"schedule": "no_such_schedule"}, ValueError, ["schedule", "no_such_schedule"]),
        ({"schedule": "linear"}, TypeError, ["schedule", "steps"]),
        ({"schedule": 3}, TypeError, ["schedule", "int"]),
        ({"plugin_manager": "pm"}, TypeError, ["plugin_manager", "str"]),
    ],
)
def test_bad_arguments_are_named(kwargs, error, words):
    pm = kwargs.pop("plugin_manager", new_plugin_manager(autoload=False))
    with pytest.raises(error) as info:
        NDASession(plugin_manager=pm, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_defaults_follow_the_contract(pm):
    s = make(pm)
    assert (s.transform_spec, s.base_weight, s.mode, s.anda, s.alpha) == ("jigsaw", 0.75, "weighted", False, None)
    assert s.generator is None  # created lazily on the first batch's device
    assert s.advance() is None and s.num_advances == 1


def test_default_plugin_manager_is_the_process_wide_one():
    assert NDASession().plugin_manager is nda_plugins.get_plugin_manager()


# ----------------------------------------------------------------------------------------
# Negatives
# ----------------------------------------------------------------------------------------


def test_negatives_apply_the_transform_with_the_session_generator(pm):
    real = torch.rand(6, 3, 8, 8)
    labels = torch.arange(6)
    s = make(pm, transform="jigsaw", seed=3)
    neg, neg_labels = s.negatives(real, labels, step=0)
    assert s.generator is not None and s.generator.device == real.device
    expected = nda_plugins.transforms.build("jigsaw")(real, generator=torch.Generator().manual_seed(3))
    assert torch.equal(neg, expected)
    assert neg_labels is labels  # a negative keeps its source's label
    assert not torch.equal(neg, real)


def test_negatives_are_reproducible_from_the_seed(pm):
    real = torch.rand(4, 3, 8, 8)
    a, b, c = make(pm, seed=1), make(pm, seed=1), make(pm, seed=2)
    seq_a = [a.negatives(real, step=i)[0] for i in range(3)]
    seq_b = [b.negatives(real, step=i)[0] for i in range(3)]
    seq_c = [c.negatives(real, step=i)[0] for i in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(seq_a, seq_b))
    assert not torch.equal(seq_a[1], seq_a[2])  # the generator advances
    assert not all(torch.equal(x, y) for x, y in zip(seq_a, seq_c))


def test_video_and_callable_transform(pm):
    seen = {}

    def flip(x, *, generator=None, partner=None):
        seen["generator"] = generator
        return x.flip(-1)

    s = make(pm, transform=flip)
    clip = torch.rand(2, 3, 4, 6, 6)
    neg, _ = s.negatives(clip, step=5)
    assert torch.equal(neg, clip.flip(-1)) and seen["generator"] is s.generator


@pytest.mark.parametrize(
    "call, error, word",
    [
        (lambda s: s.negatives(torch.rand(3, 8, 8), step=0), ValueError, "real"),
        (lambda s: s.negatives([1, 2], step=0), TypeError, "real"),
        (lambda s: s.negatives(torch.rand(2, 3, 8, 8), torch.arange(3), step=0), ValueError, "labels"),
        (lambda s: s.negatives(torch.rand(2, 3, 8, 8), [0, 1], step=0), TypeError, "labels"),
        (lambda s: s.negatives(torch.rand(2, 3, 8, 8), step=-1), ValueError, "step"),
        (lambda s: s.weight(torch.tensor(3)), TypeError, "step"),
        (lambda s: s.observe(1.5), TypeError, "step"),
    ],
)
def test_bad_per_step_input(pm, call, error, word):
    with pytest.raises(error, match=word):
        call(make(pm))


def test_no_policy_plugin_is_a_clear_error():
    bare = new_plugin_manager(autoload=False, builtins=False)
    s = NDASession(transform=lambda x, **kw: -x, schedule=lambda step: 0.5, plugin_manager=bare)
    with pytest.raises(RuntimeError, match="nda_make_negatives"):
        s.negatives(torch.rand(2, 3, 4, 4), step=0)
    with pytest.raises(RuntimeError, match="nda_negative_weight"):
        s.weight(0)


def test_bad_plugin_answers_are_caught(pm):
    class Bad:
        @hookimpl(tryfirst=True)
        def nda_make_negatives(self, real):
            return real[:1], None

        @hookimpl(tryfirst=True)
        def nda_negative_weight(self):
            return 1.5

    register(pm, Bad(), "bad")
    s = make(pm)
    with pytest.raises(ValueError, match="shape"):
        s.negatives(torch.rand(2, 3, 4, 4), step=0)
    with pytest.raises(ValueError, match="1.5"):
        s.weight(0)


# ----------------------------------------------------------------------------------------
# Weight, schedules, ANDA
# ----------------------------------------------------------------------------------------


def test_weight_follows_the_schedule(pm):
    assert make(pm, weight=0.6).weight(1000) == 0.6
    lin = make(pm, weight=0.8, schedule="linear:steps=10")
    assert [lin.weight(t) for t in (0, 5, 10, 50)] == [0.0, 0.4, 0.8, 0.8]
    cur = make(pm, weight=0.5, schedule="curriculum:steps=3")
    assert [cur.weight(t) for t in (0, 2, 3)] == [0.0, 0.0, 0.5]
    custom = make(pm, schedule=lambda step: 0.1 * (step % 3))
    assert custom.weight(4) == pytest.approx(0.1)


def test_anda_weight_is_lambda_times_one_minus_alpha(pm):
    batch, interval, kimg = 8, 2, 0.08  # one update moves alpha by 8*2/80 = 0.2
    s = make(pm, weight=0.5, anda=True, anda_lambda=0.9, anda_interval=interval, anda_kimg=kimg, batch_size=batch)
    reference = AdaptiveAlpha(batch_size=batch, interval=interval, speed_kimg=kimg)
    assert s.alpha == 0.0 and s.weight(0) == 0.9
    for step in range(6):
        logits = torch.full((batch,), 1.0 if step < 4 else -1.0)
        with pytest.warns(UserWarning, match="'other'") if step == 0 else contextlib.nullcontext():
            s.observe(step, real_logits=logits, other=torch.zeros(1))  # unknown keys: warned once, ignored
        reference.observe(logits)
        assert s.advance() == reference.step()
        assert s.alpha == reference.value
        assert s.weight(step) == 0.9 * (1.0 - reference.value)
    assert s.alpha == pytest.approx(0.2)  # up, up, down
    assert s.report(5) == {"NDA/weight": s.weight(5), "NDA/alpha": s.alpha}


def test_anda_lambda_defaults_to_weight_and_drives_the_schedule(pm):
    s = make(pm, weight=0.6, anda=True, batch_size=4, schedule="linear:steps=10")
    assert s.anda_lambda == 0.6 and s.weight(10) == 0.6 and s.weight(5) == pytest.approx(0.3)


def test_observe_without_real_logits_leaves_alpha(pm):
    s = make(pm, anda=True, batch_size=4, anda_interval=1, anda_kimg=0.004)
    s.observe(0, fake_logits=torch.ones(4))
    s.advance()
    assert s.alpha == 0.0


def test_report_merges_plugins(pm):
    class Extra:
        @hookimpl
        def nda_report(self, session, step):
            return {"Extra/step": step, "NDA/weight": -1.0}

    s = make(pm, weight=0.25)
    assert s.report(3) == {"NDA/weight": 0.25}
    register(pm, Extra(), "extra")
    assert s.report(3) == {"NDA/weight": -1.0, "Extra/step": 3}  # the later plugin wins a clash


# ----------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------


def _train(s, steps, start, batch=4):
    """Run ``steps`` fake training steps; return the negatives and alphas seen."""
    out = []
    for step in range(start, start + steps):
        real = torch.arange(batch * 3 * 4 * 4, dtype=torch.float32).reshape(batch, 3, 4, 4) + step
        neg, _ = s.negatives(real, step=step)
        s.observe(step, real_logits=torch.linspace(0.5, 3.0, batch) - 0.4 * step)
        out.append((neg, s.advance(), s.weight(step)))
    return out


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("split", [3, 5])  # mid-interval and at an interval boundary
def test_resume_continues_exactly(pm, split):
    kwargs = dict(anda=True, batch_size=4, anda_interval=2, anda_kimg=0.04, seed=7, transform="cutout")
    straight = make(pm, **kwargs)
    expected = _train(straight, 12, 0)

    first = make(pm, **kwargs)
    _train(first, split, 0)
    state = _roundtrip(first.state_dict())
    resumed = make(pm, **{**kwargs, "seed": 0})  # the seed comes from the checkpoint
    resumed.load_state_dict(state)
    assert_state_equal(resumed.state_dict(), first.state_dict())
    got = _train(resumed, 12 - split, split)
    for (neg_a, alpha_a, w_a), (neg_b, alpha_b, w_b) in zip(expected[split:], got):
        assert torch.equal(neg_a, neg_b) and alpha_a == alpha_b and w_a == w_b
    assert resumed.num_advances == straight.num_advances == 12
    alphas = [alpha for _, alpha, _ in expected]
    assert max(alphas) > 0.0 and alphas[-1] < max(alphas)  # alpha went up, then down


def test_state_before_the_first_batch_roundtrips(pm):
    a = make(pm, seed=11)
    b = make(pm, seed=0)
    b.load_state_dict(_roundtrip(a.state_dict()))
    real = torch.rand(4, 3, 8, 8)
    assert torch.equal(a.negatives(real, step=0)[0], b.negatives(real, step=0)[0])


def _corrupt(state, path, value):
    state = copy.deepcopy(state)
    node = state
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return state


K = builtin_policy.STATE_KEY


@pytest.mark.parametrize(
    "path, value, error, word",
    [
        ((K,), KeyError, ValueError, "missing keys"),
        (("unknown.plugin",), {}, ValueError, "unexpected keys"),
        ((K,), [1, 2], TypeError, "dict"),
        ((K, "version"), 99, ValueError, "version"),
        ((K, "seed"), -3, ValueError, "seed"),
        ((K, "num_advances"), 1.5, ValueError, "num_advances"),
        ((K, "generator", "state"), torch.zeros(3, dtype=torch.uint8), ValueError, "generator"),
        ((K, "generator", "state"), torch.zeros(5, 5), ValueError, "generator"),
        ((K, "anda"), None, ValueError, "anda"),
        ((K, "anda", "value"), 2.0, ValueError, "value"),
        ((K, "anda", "num_steps"), -1, ValueError, "num_steps"),
    ],
)
def test_bad_state_leaves_the_session_unchanged(pm, path, value, error, word):
    s = make(pm, anda=True, batch_size=4, anda_interval=2, anda_kimg=0.01)
    _train(s, 5, 0)
    good = s.state_dict()
    with pytest.raises(error, match=word):
        s.load_state_dict(_corrupt(good, path, value))
    assert_state_equal(s.state_dict(), good)


def test_state_type_is_checked(pm):
    with pytest.raises(TypeError, match="state"):
        make(pm).load_state_dict([("a", 1)])


def test_anda_state_into_plain_session_is_refused(pm):
    anda = make(pm, anda=True, batch_size=4)
    plain = make(pm)
    with pytest.raises(ValueError, match="anda"):
        plain.load_state_dict(anda.state_dict())


def test_failing_plugin_rolls_every_plugin_back(pm):
    class Fragile:
        @hookimpl(trylast=True)  # runs after the built-in policy has loaded its part
        def nda_load_state_dict(self, state):
            if state.get("fail"):
                raise RuntimeError("boom")

    register(pm, Fragile(), "fragile")
    s = make(pm, anda=True, batch_size=4, anda_interval=1, anda_kimg=0.01)
    before = s.state_dict()
    other = make(pm, anda=True, batch_size=4, anda_interval=1, anda_kimg=0.01)
    _train(other, 3, 0)
    bad = {**other.state_dict(), "fail": True}
    with pytest.raises(RuntimeError, match="boom"):
        s.load_state_dict(bad, strict=False)
    assert_state_equal(s.state_dict(), before)


def test_non_strict_ignores_unknown_and_missing_keys(pm):
    s = make(pm)
    s.load_state_dict({"someone.else": {"x": 1}}, strict=False)
    assert s.generator is None and s.num_advances == 0


def test_generator_state_from_another_device_type_is_checked_at_first_batch(pm):
    s = make(pm)
    state = s.state_dict()
    state[K]["generator"] = {"device": "cuda", "state": torch.zeros(16, dtype=torch.uint8)}
    s.load_state_dict(state)
    assert_state_equal(s.state_dict(), state)  # kept until the device is known
    with pytest.raises(ValueError, match="cuda"):
        s.negatives(torch.rand(2, 3, 4, 4), step=0)


def test_plugin_state_goes_through_the_hooks(pm):
    class Counter:
        nda_stats_keys = {"tick"}  # the stats key it reads

        def __init__(self):
            self.count = 0

        @hookimpl
        def nda_observe(self, stats):
            self.count += int("tick" in stats)

        @hookimpl
        def nda_state_dict(self):
            return "counter", {"count": self.count}

        @hookimpl
        def nda_load_state_dict(self, state):
            self.count = state["counter"]["count"]

    a, b = Counter(), Counter()
    pm_b = new_plugin_manager(autoload=False)
    register(pm, a, "counter")
    register(pm_b, b, "counter")
    sa, sb = make(pm), make(pm_b)
    sa.observe(0, tick=1)
    sa.observe(1, tick=1)
    assert sa.state_dict()["counter"] == {"count": 2}
    sb.load_state_dict(sa.state_dict())
    assert b.count == 2


def test_duplicate_state_keys_are_refused(pm):
    class Clash:
        @hookimpl
        def nda_state_dict(self):
            return K, {}

    register(pm, Clash(), "clash")
    with pytest.raises(ValueError, match="same key"):
        make(pm).state_dict()
