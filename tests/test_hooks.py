"""The hook registry: built-ins, an entry-point plugin end to end, autoload switch, errors."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

import nda_plugins
from nda_plugins import NDASession, PluginRegistrationError, hookimpl, hookspecs, new_plugin_manager
from nda_plugins import transforms
from nda_plugins._manager import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, register, set_plugin_manager
from nda_plugins.cli import main
from nda_plugins.plugins import BUILTIN_PLUGINS

PLUGIN_MODULE = "nda_thirdparty_demo_plugin"

# The third-party plugin, as its author would write it: a transform, a negative-batch policy
# and a weight override, the last two taking precedence over the built-ins (tryfirst).
PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A third-party nda_plugins plugin (installed through an entry point)."""
    from nda_plugins import hookimpl


    def make_negate(offset=1.0):
        def negate(x, *, generator=None, partner=None):
            return -x - offset
        return negate


    @hookimpl
    def nda_register_transforms(registry):
        registry.add("negate", make_negate)


    @hookimpl(tryfirst=True)
    def nda_make_negatives(session, real, labels, step, generator):
        if session.transform_spec.startswith("negate"):
            # a custom policy: shift labels so conditional D sees a "negative class"
            return session.transform(real, generator=generator), None if labels is None else labels + 100
        return None  # defer to the built-in policy


    @hookimpl(tryfirst=True)
    def nda_negative_weight(session, step, alpha):
        return 0.125 if step < 10 else None  # a warm start, then the built-in schedule
    '''
)


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A distribution 'nda-thirdparty-demo' with an entry point in group ``nda_plugins``.

    Written as a real ``*.dist-info`` folder on ``sys.path``, so importlib.metadata finds it
    exactly as it finds an installed wheel.
    """
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "nda_thirdparty_demo-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nda-thirdparty-demo\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nthirdparty = {PLUGIN_MODULE}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    importlib.invalidate_caches()
    set_plugin_manager(None)
    yield tmp_path
    set_plugin_manager(None)
    sys.modules.pop(PLUGIN_MODULE, None)
    importlib.invalidate_caches()


def test_builtins_are_registered_like_any_plugin():
    pm = new_plugin_manager(autoload=False)
    names = [name for name, _ in pm.list_name_plugin()]
    assert names == [name for name, _ in BUILTIN_PLUGINS]
    assert "nda_plugins.builtin_policy" in names
    bare = new_plugin_manager(autoload=False, builtins=False)
    assert bare.list_name_plugin() == []


@pytest.mark.parametrize("name, plugin", BUILTIN_PLUGINS, ids=[n for n, _ in BUILTIN_PLUGINS])
def test_every_builtin_hookimpl_matches_a_spec(name, plugin):
    pm = new_plugin_manager(autoload=False, builtins=False)
    register(pm, plugin, name)
    callers = pm.get_hookcallers(plugin)
    assert callers, f"{name} implements no hook"
    for caller in callers:
        assert caller.spec is not None and caller.name.startswith("nda_")


def test_every_hook_is_documented():
    for name in dir(hookspecs):
        if name.startswith("nda_"):
            doc = getattr(hookspecs, name).__doc__ or ""
            assert "Returns" in doc or "Args" in doc, name


def test_entry_point_plugin_end_to_end(fake_distribution):
    pm = new_plugin_manager()
    assert pm.get_plugin("thirdparty") is sys.modules[PLUGIN_MODULE]
    assert "negate" in transforms.available(pm)
    assert transforms.registry(pm).owner("negate") == "thirdparty"

    session = NDASession(transform="negate:offset=2", weight=0.5, plugin_manager=pm)
    real = torch.rand(4, 3, 8, 8)
    labels = torch.arange(4)
    neg, neg_labels = session.negatives(real, labels, step=0)
    assert torch.equal(neg, -real - 2)  # the plugin's transform
    assert torch.equal(neg_labels, labels + 100)  # the plugin's tryfirst policy won
    assert session.weight(3) == 0.125  # the plugin's tryfirst weight ...
    assert session.weight(10) == 0.5  # ... defers to the built-in schedule later
    assert session.report(3)["NDA/weight"] == 0.125

    # A built-in transform still goes through the built-in policy (the plugin returns None).
    jig = NDASession(transform="jigsaw", plugin_manager=pm)
    neg, neg_labels = jig.negatives(real, labels, step=0)
    assert neg_labels is labels and not torch.equal(neg, -real - 1)


def test_entry_point_plugin_shows_in_nda_list(fake_distribution):
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    assert "thirdparty" in result.output
    assert f"entry point {PLUGIN_MODULE} from nda-thirdparty-demo 1.2" in result.output
    assert "negate" in result.output and "from thirdparty" in result.output


@pytest.mark.parametrize("value, loaded", [("1", False), ("yes", False), ("0", True), ("", True)])
def test_autoload_switch(fake_distribution, monkeypatch, value, loaded):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, value)
    pm = new_plugin_manager()
    assert (pm.get_plugin("thirdparty") is not None) == loaded
    assert ("negate" in transforms.available(pm)) == loaded
    result = CliRunner().invoke(main, ["list", "plugins"])
    assert result.exit_code == 0 and ("thirdparty" in result.output) == loaded


def test_explicit_autoload_overrides_the_environment(fake_distribution, monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert new_plugin_manager(autoload=True).get_plugin("thirdparty") is not None
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    assert new_plugin_manager(autoload=False).get_plugin("thirdparty") is None


def test_broken_entry_point_names_the_plugin(fake_distribution):
    (fake_distribution / f"{PLUGIN_MODULE}.py").write_text("raise ImportError('needs foo')\n")
    with pytest.raises(PluginRegistrationError) as info:
        new_plugin_manager()
    msg = str(info.value)
    assert "thirdparty" in msg and PLUGIN_MODULE in msg and "needs foo" in msg


def test_unknown_hook_name_is_refused_with_plugin_and_hook():
    class Typo:
        @hookimpl
        def nda_make_negativez(self, session, real):
            return None

    pm = new_plugin_manager(autoload=False)
    with pytest.raises(PluginRegistrationError) as info:
        register(pm, Typo(), "typo-plugin")
    msg = str(info.value)
    assert "typo-plugin" in msg and "nda_make_negativez" in msg and "nda_make_negatives" in msg
    assert pm.get_plugin("typo-plugin") is None


def test_unknown_argument_is_refused_with_plugin_hook_and_argument():
    class BadArg:
        @hookimpl
        def nda_negative_weight(self, session, step, lambda_):
            return 0.5

    pm = new_plugin_manager(autoload=False)
    with pytest.raises(PluginRegistrationError) as info:
        register(pm, BadArg(), "badarg-plugin")
    msg = str(info.value)
    assert "badarg-plugin" in msg and "nda_negative_weight" in msg and "lambda_" in msg
    assert pm.get_plugin("badarg-plugin") is None


def test_a_subset_of_arguments_is_enough():
    class Subset:
        @hookimpl(tryfirst=True)
        def nda_negative_weight(self, step):
            return 0.01 * step

    pm = new_plugin_manager(autoload=False)
    register(pm, Subset(), "subset")
    assert NDASession(plugin_manager=pm).weight(7) == pytest.approx(0.07)


def test_plugin_registered_later_still_adds_schedules():
    class Late:
        @hookimpl
        def nda_register_schedules(self, registry):
            registry.add("half", lambda weight=0.5: (lambda step: weight / 2))

    pm = new_plugin_manager(autoload=False)
    assert "half" not in nda_plugins.schedules.available(pm)
    register(pm, Late(), "late")
    assert NDASession(weight=0.6, schedule="half", plugin_manager=pm).weight(0) == pytest.approx(0.3)
