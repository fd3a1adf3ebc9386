"""Tests for nda_plugins.schedules: step schedules, the hook-driven registry, ANDA's AdaptiveAlpha."""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import pickle

import pytest
import torch

from nda_plugins import schedules
from nda_plugins._manager import new_plugin_manager
from nda_plugins.hookspecs import hookimpl
from nda_plugins.plugins import BUILTIN_PLUGINS
from nda_plugins.schedules import AdaptiveAlpha, ScheduleRegistry, build


@pytest.fixture
def pm():
    return new_plugin_manager(autoload=False)


# --------------------------------------------------------------------------------------------
# Step schedules
# --------------------------------------------------------------------------------------------


def test_builtin_plugin_is_listed_and_registers_every_schedule(pm):
    assert "nda_plugins.builtin_schedules" in dict(BUILTIN_PLUGINS)
    assert schedules.available(pm) == sorted(schedules.BUILTIN_SCHEDULES)


@pytest.mark.parametrize(
    "spec, options, expected",
    [
        ("constant:weight=0.75", {}, {0: 0.75, 10**9: 0.75}),
        ("constant", {"weight": 0.25}, {0: 0.25, 7: 0.25}),
        ("linear:start=0,end=0.75,steps=1000", {}, {0: 0.0, 500: 0.375, 1000: 0.75, 5000: 0.75}),
        ("linear:steps=10", {"weight": 0.5}, {0: 0.0, 4: 0.2, 10: 0.5}),
        ("linear:start=0.5,end=0.1,steps=4", {}, {0: 0.5, 2: 0.3, 4: 0.1, 9: 0.1}),
        ("cosine:start=0,end=0.5,steps=100", {}, {0: 0.0, 50: 0.25, 100: 0.5, 101: 0.5}),
        ("warmup:weight=0.6,steps=3", {}, {0: 0.0, 1: 0.2, 3: 0.6, 30: 0.6}),
        ("curriculum:weight=0.75,steps=20", {}, {0: 0.0, 19: 0.0, 20: 0.75, 21: 0.75}),
        ("curriculum:steps=0", {"weight": 0.5}, {0: 0.5}),
    ],
)
def test_schedule_values(pm, spec, options, expected):
    s = build(spec, plugin_manager=pm, **options)
    for step, value in expected.items():
        got = s(step)
        assert isinstance(got, float)
        assert got == pytest.approx(value, abs=1e-12), (spec, step)


def test_cosine_shape_between_knots(pm):
    s = build("cosine:start=0.1,end=0.7,steps=8", plugin_manager=pm)
    for t in range(9):
        assert s(t) == pytest.approx(0.1 + 0.6 * (1 - math.cos(math.pi * t / 8)) / 2)


def test_schedules_are_pure_and_picklable(pm):
    s = build("warmup:weight=0.5,steps=10", plugin_manager=pm)
    assert [s(t) for t in (7, 3, 7)] == [0.35, 0.15, 0.35]
    clone = pickle.loads(pickle.dumps(s))
    assert [clone(t) for t in range(12)] == [s(t) for t in range(12)]


@pytest.mark.parametrize(
    "spec, options, exc, word",
    [
        ("exponential:weight=0.5", {}, ValueError, "exponential"),
        ("constant:weight=1.0", {}, ValueError, "weight"),
        ("constant:weight=-0.5", {}, ValueError, "weight"),
        ("constant", {"weight": "half"}, TypeError, "weight"),
        ("linear:steps=0,end=0.5", {}, ValueError, "steps"),
        ("linear:steps=10", {}, ValueError, "end"),
        ("linear:steps=2.5,end=0.5", {}, TypeError, "steps"),
        ("curriculum:weight=0.5,steps=-1", {}, ValueError, "steps"),
        ("constant:weight=0.5", {"weight": 0.25}, ValueError, "weight"),
        ("constant:weight", {}, ValueError, "key=value"),
        ("constant:weight=0.5", {"bogus": 1}, TypeError, "bogus.*weight"),
        (":weight=0.5", {}, ValueError, "name"),
    ],
)
def test_bad_schedule_specs(pm, spec, options, exc, word):
    with pytest.raises(exc, match=word):
        build(spec, plugin_manager=pm, **options)


@pytest.mark.parametrize(
    "step, exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError), (torch.tensor(3), TypeError)]
)
def test_bad_step(pm, step, exc):
    for name in schedules.BUILTIN_SCHEDULES:
        s = build(name, plugin_manager=pm, weight=0.5, **({} if name == "constant" else {"steps": 4}))
        with pytest.raises(exc, match="step"):
            s(step)


def test_build_passes_callables_through(pm):
    fn = lambda step: 0.1  # noqa: E731
    assert build(fn, plugin_manager=pm) is fn
    with pytest.raises(TypeError, match="options"):
        build(fn, plugin_manager=pm, weight=0.2)
    with pytest.raises(TypeError, match="name_or_spec"):
        build(3, plugin_manager=pm)


# --------------------------------------------------------------------------------------------
# Registry and third-party plugins
# --------------------------------------------------------------------------------------------


class _Halving:
    """A third-party schedule: w halves every `every` steps."""

    def __init__(self, weight, every=10):
        self.weight, self.every = weight, every

    def __call__(self, step):
        return self.weight * 0.5 ** (schedules.check_step(step) // self.every)


class _ThirdParty:
    @hookimpl
    def nda_register_schedules(self, registry):
        registry.add("halving", _Halving)
        registry.add("constant", lambda weight: (lambda step: weight / 2), overwrite=True)


def test_third_party_plugin_adds_and_replaces_schedules(pm):
    pm.register(_ThirdParty(), name="third")  # registered before the first build
    assert "halving" in schedules.available(pm)
    assert build("halving:weight=0.8,every=5", plugin_manager=pm)(12) == pytest.approx(0.2)
    assert build("constant:weight=0.5", plugin_manager=pm)(0) == 0.25  # replaced
    assert schedules.registry(pm).owner("constant") == "third"
    # a fresh manager without the plugin still has the built-in
    assert build("constant:weight=0.5", plugin_manager=new_plugin_manager(autoload=False))(0) == 0.5


def test_plugin_registered_after_first_build_is_seen(pm):
    assert "halving" not in schedules.available(pm)
    pm.register(_ThirdParty(), name="late")  # the historic hook calls it now
    assert "halving" in schedules.available(pm)
    assert build("constant:weight=0.5", plugin_manager=pm)(3) == 0.25


def test_plugin_unregistered_later_is_dropped(pm):
    plugin = _ThirdParty()
    pm.register(plugin, name="third")
    assert "halving" in schedules.available(pm)
    pm.unregister(plugin)
    assert "halving" not in schedules.available(pm)
    assert build("constant:weight=0.5", plugin_manager=pm)(0) == 0.5


def test_clash_without_overwrite_names_both_plugins(pm):
    class Clash:
        @hookimpl
        def nda_register_schedules(self, registry):
            registry.add("linear", schedules.Constant)

    pm.register(Clash(), name="clash")
    with pytest.raises(ValueError, match="'clash'.*'linear'.*nda_plugins.builtin_schedules.*overwrite"):
        schedules.available(pm)


def test_registry_rules():
    reg = ScheduleRegistry()
    reg.add("a", schedules.Constant)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", schedules.Constant)
    reg.add("a", schedules.Warmup, overwrite=True)
    assert reg.factory("a") is schedules.Warmup and "a" in reg
    with pytest.raises(ValueError, match="name"):
        reg.add("bad:name", schedules.Constant)
    with pytest.raises(TypeError, match="factory"):
        reg.add("b", 3)
    with pytest.raises(ValueError, match="unknown schedule 'zzz'"):
        reg.factory("zzz")


def test_default_plugin_manager_is_used(monkeypatch):
    from nda_plugins import _manager

    monkeypatch.setattr(_manager, "_default", None)
    monkeypatch.setenv("NDA_PLUGINS_DISABLE_AUTOLOAD", "1")
    assert build("curriculum:weight=0.5,steps=2")(2) == 0.5
    assert schedules.registry() is schedules.registry(_manager.get_plugin_manager())


# --------------------------------------------------------------------------------------------
# AdaptiveAlpha
# --------------------------------------------------------------------------------------------


def _logits_for(step: int, rank: int = 0, size: int = 8) -> torch.Tensor:
    """Deterministic logits whose sign balance drifts, so alpha goes up and down."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    bias = math.sin(step / 5.0) + (0.8 if rank == 0 else -0.6)
    return torch.randn(size, 1, generator=g) + bias


def _reference_alpha(signs_per_update, *, batch, interval, kimg, target, initial=0.0):
    """The ADA rule written out: one update per list of sign means."""
    alpha, out = initial, []
    for mean in signs_per_update:
        alpha += math.copysign(1.0, mean - target) * batch * interval / (kimg * 1000) if mean != target else 0.0
        alpha = min(max(alpha, 0.0), 1.0)
        out.append(alpha)
    return out


def test_adaptive_alpha_follows_the_ada_rule():
    batch, interval, kimg, target = 8, 3, 0.2, 0.3
    a = AdaptiveAlpha(batch_size=batch, target=target, interval=interval, speed_kimg=kimg)
    trajectory, means, pending = [], [], []
    for step in range(60):
        x = _logits_for(step)
        a.observe(x)
        pending.append(torch.sign(x))
        trajectory.append(a.step())
        if (step + 1) % interval == 0:
            means.append(torch.cat(pending).mean().item())
            pending = []
    expected = _reference_alpha(means, batch=batch, interval=interval, kimg=kimg, target=target)
    assert trajectory[interval - 1 :: interval] == pytest.approx(expected, abs=1e-12)
    # between updates alpha is constant
    assert all(trajectory[i] == trajectory[i - 1] for i in range(1, 60) if (i + 1) % interval)
    assert a.value == trajectory[-1] and a.num_steps == 60
    assert min(trajectory) == 0.0 and 0.0 < max(trajectory) <= 1.0  # it moved, and was clamped at 0
    assert len(set(trajectory)) > 3


def test_adaptive_alpha_clamps_at_one_and_zero():
    a = AdaptiveAlpha(batch_size=10, interval=1, speed_kimg=0.004)  # adjust 2.5 per update
    a.observe(torch.ones(10))
    assert a.step() == 1.0
    a.observe(-torch.ones(10))
    assert a.step() == 0.0


def test_adaptive_alpha_without_observations_holds_still():
    a = AdaptiveAlpha(batch_size=4, interval=2, speed_kimg=0.01, initial=0.5)
    assert [a.step() for _ in range(6)] == [0.5] * 6


def test_adaptive_alpha_observe_does_not_read_values():
    a = AdaptiveAlpha(batch_size=4)
    a.observe(torch.empty(4, 1, device="meta"))  # a value read (host sync) would raise on meta
    a.observe(torch.empty(4, 1, device="meta"))


def _run(alpha: AdaptiveAlpha, steps: range) -> list[float]:
    out = []
    for step in steps:
        alpha.observe(_logits_for(step))
        out.append(alpha.step())
    return out


@pytest.mark.parametrize("stop", [17, 20, 1])
def test_adaptive_alpha_stop_and_resume_matches_uninterrupted(stop):
    kwargs = dict(batch_size=8, target=0.3, interval=4, speed_kimg=0.1)
    full = _run(AdaptiveAlpha(**kwargs), range(48))
    first = AdaptiveAlpha(**kwargs)
    head = _run(first, range(stop))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = AdaptiveAlpha(**kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    tail = _run(resumed, range(stop, 48))
    assert head + tail == full
    assert len(set(full)) > 3
    # the state survives JSON too (plain Python numbers)
    again = AdaptiveAlpha(**kwargs)
    again.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert again.state_dict() == first.state_dict()


def test_resume_needs_the_pending_statistic():
    """Dropping the statistic gathered since the last update would change alpha's direction."""
    kwargs = dict(batch_size=8, target=0.3, interval=4, speed_kimg=1.0)
    feed = [torch.ones(8)] * 3 + [torch.tensor([1.0, 1.0] + [-1.0] * 6)]  # interval mean 0.625 > 0.3
    uninterrupted = AdaptiveAlpha(**kwargs, initial=0.5)
    for x in feed:
        uninterrupted.observe(x)
        uninterrupted.step()
    assert uninterrupted.value > 0.5

    first = AdaptiveAlpha(**kwargs, initial=0.5)
    for x in feed[:3]:
        first.observe(x)
        first.step()
    state = first.state_dict()
    assert state["pending_count"] == 24
    for pending in (state, dict(state, pending_sum=0.0, pending_count=0)):
        resumed = AdaptiveAlpha(**kwargs)
        resumed.load_state_dict(pending)
        resumed.observe(feed[3])
        resumed.step()
        # with the pending statistic: same alpha; without it (mean -0.5 < 0.3): the other way
        assert (resumed.value == uninterrupted.value) == (pending is state)


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=4.0), TypeError, "batch_size"),
        (dict(batch_size=4, interval=0), ValueError, "interval"),
        (dict(batch_size=4, target=1.0), ValueError, "target"),
        (dict(batch_size=4, speed_kimg=0.0), ValueError, "speed_kimg"),
        (dict(batch_size=4, initial=1.5), ValueError, "initial"),
        (dict(batch_size=4, initial="0"), TypeError, "initial"),
    ],
)
def test_adaptive_alpha_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        AdaptiveAlpha(**kwargs)


def test_adaptive_alpha_bad_observe_and_state():
    a = AdaptiveAlpha(batch_size=4)
    with pytest.raises(TypeError, match="real_logits"):
        a.observe([1.0, -1.0])
    with pytest.raises(TypeError, match="real_logits"):
        a.observe(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="missing"):
        a.load_state_dict({"value": 0.5})
    with pytest.raises(ValueError, match="value"):
        a.load_state_dict({"value": 2.0, "num_steps": 0, "pending_sum": 0.0, "pending_count": 0})


# --------------------------------------------------------------------------------------------
# AdaptiveAlpha under torch.distributed (2 gloo processes on CPU)
# --------------------------------------------------------------------------------------------

_DIST_STEPS = 24
_DIST_KW = dict(batch_size=16, target=0.2, interval=4, speed_kimg=0.2)
_DIST_SIZES = {0: 6, 1: 10}  # ranks see different logits and different numbers of them


def _dist_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        a = AdaptiveAlpha(**_DIST_KW)
        traj = []
        for step in range(_DIST_STEPS):
            a.observe(_logits_for(step, rank, _DIST_SIZES[rank]))
            traj.append(a.step())
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(traj, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
def test_adaptive_alpha_is_the_same_on_every_rank(tmp_path):
    # fork: the children need not re-import torch (seconds on a 2-core machine); gloo on CPU only
    torch.multiprocessing.start_processes(
        _dist_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
        start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn",
    )
    traj = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert traj[0] == traj[1]
    # equal to one process seeing both ranks' logits, and unlike either rank alone
    both, alone = AdaptiveAlpha(**_DIST_KW), AdaptiveAlpha(**_DIST_KW)
    expected, rank0_only = [], []
    for step in range(_DIST_STEPS):
        both.observe(torch.cat([_logits_for(step, r, _DIST_SIZES[r]) for r in (0, 1)]))
        expected.append(both.step())
        alone.observe(_logits_for(step, 0, _DIST_SIZES[0]))
        rank0_only.append(alone.step())
    assert traj[0] == expected
    assert traj[0] != rank0_only


# --------------------------------------------------------------------------------------------
# Every listed schedule builds from its listed form
# --------------------------------------------------------------------------------------------


def _listed_schedules():
    import json

    from click.testing import CliRunner

    from nda_plugins.cli import main

    result = CliRunner().invoke(main, ["list", "schedules", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["schedules"]


def test_every_listed_schedule_builds_from_its_listed_example():
    from pathlib import Path

    import nda_plugins.schedules as S
    from nda_plugins._registry import parse_spec

    rows = _listed_schedules()
    assert {r["name"] for r in rows} == set(S.available())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for row in rows:
        assert row["example"], row["name"]
        schedule = S.build(row["example"])
        assert 0.0 <= schedule(0) < 1.0 and 0.0 <= schedule(10**6) < 1.0
        required = [o["name"] for o in row["options"] if o["required"]]
        # the listed example sets every listed required option
        assert set(required) <= set(parse_spec(row["example"])[1])
        # the README lists the same form (users copy it from there)
        assert f"`{row['example']}`" in readme, row["example"]
        if required:  # the bare name fails, naming what is missing and the listed form
            with pytest.raises(TypeError) as info:
                S.build(row["name"])
            assert all(name in str(info.value) for name in required) and row["example"] in str(info.value)


def test_listed_options_match_the_schedule_signatures():
    import nda_plugins.schedules as S

    by_name = {r["name"]: r for r in _listed_schedules()}
    assert [o["name"] for o in by_name["constant"]["options"]] == ["weight"]
    assert by_name["constant"]["options"][0]["required"]
    linear = {o["name"]: o for o in by_name["linear"]["options"]}
    assert linear["steps"]["required"] and not linear["start"]["required"] and linear["start"]["default"] == "0.0"
    assert S.build("linear:steps=10,weight=0.5")(10) == 0.5  # weight is end's default, as listed
