"""Reliability: every promise of the contract holds under bad input and broken plugins.

One parametrized test per class of failure (issue 15). The patching classes (kills, failed
commit stages) live in ``tests/test_patch_tool.py``; the transform classes in the transform tests.
"""

from __future__ import annotations

import copy
import importlib
import math
import sys
import warnings

import pytest
import torch
from click.testing import CliRunner

from nda_plugins import NDASession, hookimpl, metrics, new_plugin_manager, schedules, transforms
from nda_plugins._manager import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    PluginRegistrationError,
    broken_plugins,
    register,
    set_broken_plugin_handler,
    set_plugin_manager,
)
from nda_plugins.cli import main
from nda_plugins.contrastive import nda_info_nce, nda_info_nce_dense
from nda_plugins.losses import discriminator_loss, fake_side_loss, generator_loss, real_loss
from nda_plugins.nat import nat_gan_discriminator_loss, nat_loss
from nda_plugins.plugins.builtin_policy import STATE_KEY
from nda_plugins.schedules import AdaptiveAlpha


@pytest.fixture
def pm():
    return new_plugin_manager(autoload=False)


def _same(a, b) -> bool:
    """Exact equality of nested dicts of tensors and Python values (NaN == NaN)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------------------------------
# A failed load_state_dict leaves the object exactly as it was
# ----------------------------------------------------------------------------------------


def _alpha():
    a = AdaptiveAlpha(batch_size=8, interval=2, speed_kimg=0.08)
    for _ in range(3):
        a.observe(torch.ones(8))
        a.step()
    return a


def _session(pm):
    s = NDASession(weight=0.5, anda=True, batch_size=8, anda_interval=2, anda_kimg=0.08, plugin_manager=pm)
    s.negatives(torch.rand(4, 3, 8, 8), step=0)  # makes the CPU generator
    for step in range(3):
        s.observe(step, real_logits=torch.ones(8))
        s.advance()
    return s


def _edit(path, value):
    def edit(state):
        node = state
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("make, edit, error", [
    # AdaptiveAlpha: a valid first field, then a bad one (the value must not move)
    (_alpha, lambda s: s.update(value=0.9, num_steps=3.7), "num_steps"),
    (_alpha, lambda s: s.update(value=0.9, pending_count=2.0), "pending_count"),
    (_alpha, lambda s: s.update(value=0.9, pending_sum=float("nan")), "pending_sum"),
    (_alpha, lambda s: s.update(value=float("nan")), "value"),
    (_alpha, lambda s: s.update(pending_sum=100.0, pending_count=8), "pending_sum"),
    (_alpha, lambda s: s.update(num_steps=True), "num_steps"),
    # NDASession: the generator, counters and ANDA's state
    ("session", _edit((STATE_KEY, "generator", "device"), "floppy"), "device"),
    ("session", _edit((STATE_KEY, "generator", "device"), "cuda:0"), "device"),
    ("session", _edit((STATE_KEY, "seed"), 2**64), "seed"),
    ("session", _edit((STATE_KEY, "num_advances"), 2.5), "num_advances"),
    ("session", _edit((STATE_KEY, "anda", "pending_sum"), float("nan")), "pending_sum"),
    ("session", _edit((STATE_KEY, "anda", "value"), 1.5), "value"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_failed_load_state_dict_changes_nothing(pm, make, edit, error):
    obj = _session(pm) if make == "session" else make()
    before = copy.deepcopy(obj.state_dict())
    bad = copy.deepcopy(before)
    edit(bad)
    with pytest.raises((TypeError, ValueError), match=error):
        obj.load_state_dict(bad)
    assert _same(obj.state_dict(), before)
    if make == "session":  # and it still works: the valid generator was not lost
        assert obj.negatives(torch.rand(4, 3, 8, 8), step=1)[0].shape == (4, 3, 8, 8)


# ----------------------------------------------------------------------------------------
# The contract of nda_make_negatives, checked where the result enters the library
# ----------------------------------------------------------------------------------------


def _in_place(real):
    real.mul_(0.5)
    return real.flip(0).clone()


@pytest.mark.parametrize("make, error", [
    (lambda real: (real.flip(0), "labels"), "negative labels"),
    (lambda real: real[:, :, :4], "shape"),
    (lambda real: real.double(), "dtype"),
    (lambda real: torch.empty_like(real, device="meta"), "device"),
    (lambda real: real, "share memory"),
    (lambda real: real.view(real.shape), "share memory"),
    (_in_place, "in place"),
    (lambda real: "not a tensor", "must return"),
], ids=["labels", "shape", "dtype", "device", "itself", "view", "in-place", "type"])
def test_negatives_contract_is_enforced_and_names_the_plugin(pm, make, error):
    class Rogue:
        @hookimpl(tryfirst=True)
        def nda_make_negatives(self, real, labels):
            out = make(real)
            if isinstance(out, tuple):  # (negatives, wrong labels)
                return out[0], labels[:1]
            return out if isinstance(out, str) else (out, labels)

    register(pm, Rogue(), name="rogue-plugin")
    session = NDASession(plugin_manager=pm)
    with pytest.raises((TypeError, ValueError, RuntimeError), match=f"rogue-plugin.*{error}|{error}.*rogue-plugin"):
        session.negatives(torch.rand(4, 3, 8, 8), torch.arange(4), step=0)


def test_negatives_contract_accepts_good_plugins(pm):
    real = torch.rand(4, 3, 8, 8)
    neg, _ = NDASession(plugin_manager=pm).negatives(real, step=0)
    assert neg.shape == real.shape and not torch.equal(neg, real)
    with torch.inference_mode():  # no version counter there: still accepted
        NDASession(plugin_manager=pm).negatives(torch.rand(4, 3, 8, 8), step=0)


# ----------------------------------------------------------------------------------------
# A hookimpl that would never be called is refused at registration
# ----------------------------------------------------------------------------------------


class _NoPrefix:
    @hookimpl
    def make_negatives(self, real):
        return real


class _UnknownSpecname:
    @hookimpl(specname="nda_make_negativez")
    def negatives(self, real):
        return real


class _GoodSpecname:
    @hookimpl(specname="nda_negative_weight")
    def my_weight(self, step):
        return 0.25


@pytest.mark.parametrize("plugin, error", [
    (_NoPrefix(), "'make_negatives' lacks the 'nda_' prefix"),
    (_UnknownSpecname(), "'nda_make_negativez' is not an nda_plugins hook"),
    (_GoodSpecname(), None),
], ids=["no-prefix", "unknown-specname", "good-specname"])
def test_registration_refuses_hookimpls_that_would_never_be_called(pm, plugin, error):
    if error is None:
        register(pm, plugin, name="fine")
        assert NDASession(plugin_manager=pm).weight(0) in (0.25, 0.75)
        return
    with pytest.raises(PluginRegistrationError, match=f"plugin 'odd'.*{error}"):
        register(pm, plugin, name="odd")
    assert pm.get_plugin("odd") is None  # nothing half-registered


# ----------------------------------------------------------------------------------------
# Broken entry-point plugins: one line per plugin, the command goes on, doctor lists them
# ----------------------------------------------------------------------------------------

_BROKEN = {
    "import": "import a_module_that_does_not_exist_anywhere\n",
    "register": "from nda_plugins import hookimpl\n\n@hookimpl\ndef negatives(real):\n    return real\n",
}


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch, request):
    kind = request.param
    module = f"nda_broken_{kind}_plugin"
    (tmp_path / f"{module}.py").write_text(_BROKEN[kind])
    info = tmp_path / f"nda_broken_{kind}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: nda-broken-{kind}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbroken-{kind} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    importlib.invalidate_caches()
    set_plugin_manager(None)
    yield kind
    set_plugin_manager(None)
    set_broken_plugin_handler(None)
    sys.modules.pop(module, None)
    importlib.invalidate_caches()


@pytest.mark.parametrize("broken_distribution", ["import", "register"], indirect=True)
@pytest.mark.parametrize("args", [["list"], ["preview", "--transforms", "jigsaw", "--n", "2", "--size", "8"],
                                  ["doctor"]], ids=["list", "preview", "doctor"])
def test_broken_entry_point_plugin_costs_one_line(broken_distribution, args, tmp_path, monkeypatch):
    kind = broken_distribution
    name = f"broken-{kind}"
    with pytest.raises(PluginRegistrationError, match=name):  # the library alone: a clear error
        new_plugin_manager()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    reason = "a_module_that_does_not_exist_anywhere" if kind == "import" else "'negatives' lacks the 'nda_' prefix"
    lines = [line for line in result.output.splitlines() if name in line]
    assert lines and all(reason in line for line in lines), result.output
    if args[0] == "doctor":
        assert any(line.strip().startswith(f"BROKEN {name}:") for line in lines)
    else:
        assert len(lines) == 1 and lines[0].startswith(f"nda: plugin '{name}' skipped")
    pm = new_plugin_manager(on_broken=lambda n, r: None)
    assert [n for n, _ in broken_plugins(pm)] == [name] and "jigsaw" in transforms.available(pm)


# ----------------------------------------------------------------------------------------
# Numbers that lie: NaN, empty batches, zero widths, typos in stats keys
# ----------------------------------------------------------------------------------------

_NAN = torch.tensor([0.5, float("nan"), 1.0])


def _anda_on_nan():
    a = AdaptiveAlpha(batch_size=4, interval=1, speed_kimg=0.004, initial=0.5)
    with pytest.warns(RuntimeWarning, match="4 of 4 real logits.*NaN.*alpha stays unchanged"):
        a.observe(torch.full((4,), float("nan")))
        a.step()
    assert a.value == 0.5
    a.observe(torch.tensor([1.0, 1.0, float("nan"), 1.0]))  # NaN left out: 3 of 3 positive
    with pytest.warns(RuntimeWarning, match="1 of 4"):
        a.step()
    assert a.value == 1.0
    raise ValueError("checked")


def _observe_typo(pm):
    s = NDASession(anda=True, batch_size=4, anda_interval=1, plugin_manager=pm)
    with pytest.warns(UserWarning, match="unknown stats key 'real_logit'.*did you mean 'real_logits'"):
        s.observe(0, real_logit=torch.ones(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.observe(1, real_logit=torch.ones(4))  # once per key and session
        s.observe(1, real_logits=torch.ones(4))

    class Reader:  # a plugin that reads its own key declares it
        nda_stats_keys = {"d_loss"}

        @hookimpl
        def nda_observe(self, stats):
            seen.append(float(stats["d_loss"]))

    seen = []
    register(pm, Reader(), name="reader")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.observe(2, d_loss=torch.tensor(0.5))
    assert seen == [0.5]
    raise ValueError("checked")


@pytest.mark.parametrize("call, error", [
    (lambda pm: metrics.auroc(_NAN, torch.rand(5)), "scores_in holds 1 NaN"),
    (lambda pm: metrics.auroc(torch.rand(5), torch.full((3,), float("nan"))), "scores_out holds 3 NaN"),
    (lambda pm: metrics.d_gap(torch.rand(4), torch.rand(4), range=(0.0, float("inf"))), "range.*finite"),
    (lambda pm: metrics.d_gap(torch.rand(4), torch.rand(4), range=(float("nan"), 1.0)), "range.*finite"),
    (lambda pm: metrics.d_gap(torch.tensor([float("inf"), 0.0]), torch.zeros(2)), "1 non-finite gap.*range="),
    (lambda pm: real_loss(torch.empty(0)), "real_logits must hold at least one"),
    (lambda pm: generator_loss(torch.empty(0, 1)), "fake_logits must hold at least one"),
    (lambda pm: discriminator_loss(torch.rand(2), torch.empty(0), torch.rand(2), nda_weight=0.5), "fake_logits"),
    (lambda pm: fake_side_loss(torch.rand(2), torch.empty(0), nda_weight=0.5), "neg_logits must hold"),
    (lambda pm: nda_info_nce(torch.rand(4, 0), torch.rand(4, 0)), "zero-width"),
    (lambda pm: nda_info_nce_dense(torch.rand(2, 3, 0), torch.rand(2, 3, 0)), "D >= 1"),
    (lambda pm: _anda_on_nan(), "checked"),
    (_observe_typo, "checked"),
], ids=["auroc-in", "auroc-out", "dgap-inf", "dgap-nan", "dgap-data", "real-empty", "gen-empty", "d-empty",
        "neg-empty", "infonce-0", "dense-0", "anda-nan", "stats-typo"])
def test_numbers_that_would_lie_raise_or_warn(pm, call, error):
    with pytest.raises(ValueError, match=error):
        call(pm)


def test_numbers_still_fine_for_correct_input(pm):
    assert float(metrics.auroc(torch.tensor([3.0, 2.0]), torch.tensor([2.0, 1.0]))) == 0.875
    assert fake_side_loss(torch.rand(2), torch.empty(0), nda_weight=0.0).isfinite()  # w=0 ignores negatives
    mask = torch.tensor([False, True, False])
    assert nat_loss(torch.rand(3, 4), torch.tensor([0, -1, 3]), negative_mask=mask).isfinite()


# ----------------------------------------------------------------------------------------
# Clear messages naming the argument, the expected form and the value
# ----------------------------------------------------------------------------------------


def _cli(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    raise ValueError(" ".join(result.output.split()))


def _corrupt_image(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg at all")
    _cli(["preview", "--images", folder, "--out", tmp_path / "o.png"], tmp_path, monkeypatch)


@pytest.mark.parametrize("call, error", [
    (lambda tp, mp: nat_loss(torch.rand(3, 4), torch.tensor([0, 4, 1]), negative_mask=None),
     r"targets must hold class indices in \[0, 3\], got \[4\]"),
    (lambda tp, mp: nat_gan_discriminator_loss(torch.rand(2, 3), torch.tensor([-1, 0]), torch.rand(2, 3)),
     r"real_labels must hold class indices in \[0, 2\], got \[-1\]"),
    (lambda tp, mp: transforms.build("jigsaw", plugin_manager=3), "plugin_manager must be a pluggy.PluginManager.*int"),
    (lambda tp, mp: schedules.available(plugin_manager="pm"), "plugin_manager must be a pluggy.PluginManager.*str"),
    (lambda tp, mp: NDASession(plugin_manager=object()), "plugin_manager must be a pluggy.PluginManager"),
    (lambda tp, mp: NDASession(seed=2**64), r"seed must be an int in \[0, 18446744073709551615\]"),
    (lambda tp, mp: _cli(["demo", "--seeds", f"0,{2**64}", "--quick"], tp, mp), r"--seeds.*2\*\*64"),
    (lambda tp, mp: _cli(["demo", "anomaly", "--quick", "--transform", "jigsaw:grid=banana"], tp, mp),
     "--transform.*jigsaw:grid=banana.*grid"),
    (_corrupt_image, "--images.*cannot read the image.*a.jpg"),
], ids=["nat-target", "natgan-label", "pm-transforms", "pm-schedules", "pm-session", "seed-65bit",
        "demo-seeds", "demo-transform", "preview-corrupt"])
def test_bad_input_gets_a_clear_message(call, error, tmp_path, monkeypatch):
    with pytest.raises((TypeError, ValueError), match=error):
        call(tmp_path, monkeypatch)
    assert not (tmp_path / "nda-runs").exists()  # no run folder from a refused demo


def test_failed_demo_leaves_no_empty_run_folder(tmp_path, monkeypatch):
    from nda_plugins.demo import anomaly

    def boom(*args, **kwargs):
        raise RuntimeError("diverged")

    monkeypatch.setattr(anomaly, "run", boom)
    kept = tmp_path / "mine"
    kept.mkdir()  # an empty folder the user made is theirs: kept
    for out in (tmp_path / "runs" / "a", kept):
        result = CliRunner().invoke(main, ["demo", "anomaly", "--quick", "--out", str(out)])
        assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert not (tmp_path / "runs" / "a").exists() and kept.is_dir()
