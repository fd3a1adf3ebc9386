"""Contract tests for every shipped patch series (no upstream code needed).

Parametrized over ``nda_plugins.patches.series_dirs()``, so a new series is tested without a
new test: the series file matches the patch files, each patch parses, upstream.json records
every touched file, NDA patches only add call sites, compatibility patches never touch the
fused CUDA ops (their plugin loader only to take the module ``load`` returns), and the flags in
the patches map to NDASession arguments.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re

import pytest

from nda_plugins import _patching
from nda_plugins.patches import ROOT, series_dirs

SERIES = sorted(series_dirs())
FUSED_OP_FILES = ("torch_utils/ops/bias_act", "torch_utils/ops/upfirdn2d")
#: the plugin loader the fused ops are built through: one compatibility fix only (see below)
CUSTOM_OPS = "torch_utils/custom_ops.py"
#: series name -> options module of its adapter
OPTIONS = {
    "stylegan2-ada": "nda_plugins.adapters.stylegan2_ada.options",
    "data-efficient-gans": "nda_plugins.adapters.diffaugment.options",
    "insgen": "nda_plugins.adapters.insgen.options",
}
#: series whose flags an argparse helper of the adapter declares (one call in the patch)
ARGPARSE_OPTIONS = {
    "biggan": "nda_plugins.adapters.biggan.options",
}


def hunks(patch_text: str):
    """(added lines, removed lines) of a patch body."""
    added, removed = [], []
    for line in patch_text.split("\n---\n", 1)[1].splitlines():
        if line.startswith("+++") or line.startswith("---"):
            continue
        if line.startswith("+"):
            added.append(line[1:])
        elif line.startswith("-"):
            removed.append(line[1:])
    return added, removed


def test_patches_folder_has_series():
    assert "stylegan2-ada" in SERIES, f"no stylegan2-ada series under {ROOT}"


@pytest.mark.parametrize("name", SERIES)
def test_series_matches_patch_files(name):
    series = _patching.load_series(series_dirs()[name])
    on_disk = sorted(p.name for p in series.folder.glob("*.patch"))
    assert [p.name for p in series.patches] == on_disk
    for i, p in enumerate(series.patches, 1):
        assert re.fullmatch(rf"{i:04d}-[A-Za-z0-9][A-Za-z0-9._-]*\.patch", p.name), p.name
        assert series.comments[p.name], f"{p.name} has no comment in series saying why it exists"
        assert re.search(r"upstreamable", series.comments[p.name], re.I), f"{p.name}: say whether it is upstreamable"


@pytest.mark.parametrize("name", SERIES)
def test_upstream_json_records_every_touched_file(name):
    series = _patching.load_series(series_dirs()[name])
    meta = json.loads((series.folder / "upstream.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}", meta["commit"])
    assert meta["repo"].startswith("https://github.com/")
    touched = {f for p in series.patches for f in _patching.touched_files(p)}
    assert touched == set(meta["files"])
    for rel, hashes in meta["files"].items():
        assert hashes["pristine"] != hashes["patched"], rel
        for h in hashes.values():
            assert h is None or re.fullmatch(r"[0-9a-f]{64}", h), (rel, h)


@pytest.mark.parametrize("name", SERIES)
def test_each_patch_is_a_git_format_patch_with_small_hunks(name):
    for p in _patching.load_series(series_dirs()[name]).patches:
        text = p.read_text(encoding="utf-8")
        assert text.startswith("From 0000000000000000000000000000000000000000 "), p.name
        assert re.search(r"^Subject: \[PATCH \d+/\d+\] \S", text, re.M), p.name
        assert "\ndiff --git a/" in text and "\n@@ -" in text, p.name
        added, removed = hunks(text)
        assert added or removed
        # No whole-file copies: every hunk header covers a small range.
        for m in re.finditer(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@", text, re.M):
            assert int(m.group(1) or 1) <= 40 and int(m.group(2) or 1) <= 60, (p.name, m.group(0))


def _is_nda_patch(text):
    return "nda_plugins" in "\n".join(hunks(text)[0])


@pytest.mark.parametrize("name", SERIES)
def test_nda_patches_only_add_call_sites(name):
    for p in _patching.load_series(series_dirs()[name]).patches:
        text = p.read_text(encoding="utf-8")
        if not _is_nda_patch(text):
            continue
        added, removed = hunks(text)
        assert len(removed) == 0, f"{p.name} removes upstream lines; NDA patches only add call sites"
        assert len(added) <= 40, f"{p.name} adds {len(added)} lines; keep logic in nda_plugins"
        imports = [l.strip() for l in added if re.match(r"\s*(import|from) \S+", l)]
        assert imports and all(re.match(r"from nda_plugins\.adapters\.\w+ import \w+ as nda_\w+$", l) for l in imports), imports
        code = [l for l in added if l.strip() and not l.strip().startswith("#")]
        for line in code:  # no new control flow or definitions: calls, flags and parameters only
            assert not re.match(r"\s*(def|class|for|while|with|try|if)\b", line), (p.name, line)


@pytest.mark.parametrize("name", SERIES)
def test_compat_patches_keep_fused_ops(name):
    for p in _patching.load_series(series_dirs()[name]).patches:
        text = p.read_text(encoding="utf-8")
        touched = _patching.touched_files(p)
        assert not any(f.startswith(FUSED_OP_FILES) for f in touched), p.name
        added, removed = hunks(text)
        if CUSTOM_OPS in touched:
            # Only the fix that takes the module cpp_extension.load returns (current torch no
            # longer enters it in sys.modules, so upstream's import_module after it failed and the
            # ops fell back to the reference path): the build calls stay, nothing else changes.
            assert touched == [CUSTOM_OPS], f"{p.name}: a custom_ops.py fix goes in a patch of its own"
            assert [l.strip() for l in removed if "import_module" in l] == ["module = importlib.import_module(module_name)"], p.name
            loads = [l for l in removed if "import_module" not in l]
            assert loads and all(l.strip().startswith("torch.utils.cpp_extension.load(") for l in loads), p.name
            assert [l.replace("module = ", "", 1) for l in added] == loads, f"{p.name} changes more than the load calls"
        assert not any("impl='ref'" in l or 'impl="ref"' in l for l in added), f"{p.name} switches to the reference ops"


@pytest.mark.parametrize("name", SERIES)
def test_flags_in_patch_map_to_session_arguments(name):
    if name in ARGPARSE_OPTIONS:
        pytest.skip("argparse flags: test_argparse_flags_in_patch_map_to_session_arguments")
    if name not in OPTIONS:
        pytest.skip(f"{name} declares its flags in its adapter (argparse), tested with the adapter")
    options = importlib.import_module(OPTIONS[name])
    from nda_plugins import NDASession

    patches = _patching.load_series(series_dirs()[name]).patches
    added = "\n".join(line for p in patches for line in hunks(p.read_text(encoding="utf-8"))[0])
    flags = re.findall(r"@click\.option\('(--(?:nda|anda)[\w-]*)'", added)
    assert sorted(flags) == sorted(options.FLAGS), "click flags in the patch differ from options.FLAGS"
    call = re.search(r"nda_options\.configure\(args, (.*?)\)\n", added, re.S).group(1)
    passed = dict(re.findall(r"(\w+)=(\w+)", call))
    assert passed == {kw: kw for kw, _ in options.FLAGS.values()}, "configure() gets every flag, by its own name"
    params = inspect.signature(NDASession).parameters
    for flag, (kw, arg) in options.FLAGS.items():
        assert arg in params, f"{flag} maps to {arg}, which NDASession does not take"
        assert re.search(rf"^\s+{kw}\s*= None,", added, re.M), f"setup_training_loop_kwargs lacks {kw}=None"


@pytest.mark.parametrize("name", sorted(ARGPARSE_OPTIONS))
def test_argparse_flags_in_patch_map_to_session_arguments(name):
    import argparse

    options = importlib.import_module(ARGPARSE_OPTIONS[name])
    from nda_plugins import NDASession

    patches = _patching.load_series(series_dirs()[name]).patches
    added = "\n".join(line for p in patches for line in hunks(p.read_text(encoding="utf-8"))[0])
    assert re.search(r"^\s+nda_options\.add_arguments\(parser\)$", added, re.M), "the patch must declare the flags"
    declared = {a.option_strings[0] for a in options.add_arguments(argparse.ArgumentParser())._actions
                if a.option_strings and a.dest != "help"}
    assert set(options.FLAGS) <= declared
    params = inspect.signature(NDASession).parameters
    for flag, (_, arg) in options.FLAGS.items():
        assert arg in params, f"{flag} maps to {arg}, which NDASession does not take"
