"""The fused ops' plugin loader after each StyleGAN2-ADA-family series: ``get_plugin`` returns the
module that ``torch.utils.cpp_extension.load`` returns.

Current torch's ``load`` imports the built extension from its file without entering it in
``sys.modules``; upstream's ``importlib.import_module`` after it then failed, and ``bias_act`` and
``upfirdn2d`` fell back to the reference ops on every CUDA run. Here ``load`` is replaced by a
stand-in that returns a fresh module (and builds nothing), so the loader's logic runs on any
machine: the pristine checkout fails (the check can fail) and the patched one passes, with and
without ``TORCH_EXTENSIONS_DIR`` (upstream copies the sources into a digest folder then).

Needs ``NDA_UPSTREAM_STYLEGAN2_ADA``, ``NDA_UPSTREAM_INSGEN`` or ``NDA_UPSTREAM_DIFFAUGMENT``.
"""

from __future__ import annotations

import pytest

from nda_plugins import _patching

from .conftest import copy_checkout, run_py, upstream_checkout

pytestmark = [pytest.mark.integration]

SERIES = {"stylegan2-ada": "NDA_UPSTREAM_STYLEGAN2_ADA", "insgen": "NDA_UPSTREAM_INSGEN",
          "data-efficient-gans": "NDA_UPSTREAM_DIFFAUGMENT"}

PROBE = r"""
import os, sys, types
from pathlib import Path
import torch.utils.cpp_extension as ce

sys.path.insert(0, os.getcwd())  # the checkout (this script lives elsewhere)

built = []
def load(name, sources, **kwargs):  # what current torch does: a module, not in sys.modules
    built.append((name, [Path(s).name for s in sources]))
    return types.ModuleType(name)
ce.load = load

from torch_utils import custom_ops
custom_ops.verbosity = "none"
src = Path(sys.argv[1])
module = custom_ops.get_plugin("nda_probe_plugin", sources=[str(src / "a.cpp"), str(src / "b.cu")])
assert isinstance(module, types.ModuleType) and module.__name__ == "nda_probe_plugin", module
assert custom_ops.get_plugin("nda_probe_plugin", sources=[]) is module  # cached
assert built == [("nda_probe_plugin", ["a.cpp", "b.cu"])], built
print("loader ok")
"""


@pytest.mark.parametrize("name", sorted(SERIES))
def test_get_plugin_returns_the_module_load_returns(name, tmp_path, monkeypatch):
    src = upstream_checkout(SERIES[name])
    series = _patching.get_series(name)
    if series.subdir and (src / series.subdir).is_dir():
        src = src / series.subdir
    checkout = copy_checkout(src, tmp_path / "checkout", series.commit)
    assert _patching.status(checkout)["state"] == "pristine"
    sources = tmp_path / "op"
    sources.mkdir()
    (sources / "a.cpp").write_text("// a\n")
    (sources / "b.cu").write_text("// b\n")
    (tmp_path / "probe.py").write_text(PROBE)

    def probe(extensions_dir):
        if extensions_dir:
            monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
        else:
            monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
        return run_py([str(tmp_path / "probe.py"), str(sources)], cwd=checkout, timeout=120)

    pristine = probe(False)
    assert pristine.returncode != 0 and "No module named 'nda_probe_plugin'" in pristine.stdout + pristine.stderr, (
        pristine.stdout + pristine.stderr)
    assert "applied" in _patching.apply(name, checkout)
    for extensions_dir in (False, True):
        proc = probe(extensions_dir)
        assert proc.returncode == 0 and "loader ok" in proc.stdout, proc.stdout + proc.stderr
