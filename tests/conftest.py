"""Shared fixtures: every test gets a fresh process-wide plugin manager without third-party
autoload, so an installed plugin on the developer's machine cannot change results.

The tests always run this repository's code, whichever way it was installed. With ``pip install
-e .`` that is what ``import nda_plugins`` gives anyway. With a plain ``pip install .``, the
repository's ``nda_plugins/`` (on ``sys.path`` under ``python -m pytest``) would shadow the
installed copy but lack ``nda_plugins.adapters`` and ``nda_plugins.patches``, which live in the
top-level ``adapters/`` and ``patches/`` folders; plain ``pytest`` would instead test the installed
copy, which may be older than the tree. So the repository goes first on ``sys.path`` and those two
folders are mapped to their package names, as ``pyproject.toml``'s ``package-dir`` maps them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Sub-packages that live outside ``nda_plugins/`` in the repository (see pyproject.toml).
MAPPED = {"nda_plugins.adapters": ROOT / "adapters", "nda_plugins.patches": ROOT / "patches"}


def _use_the_repository_code() -> None:
    if sys.path[:1] != [str(ROOT)]:
        sys.path.insert(0, str(ROOT))
    import nda_plugins

    if Path(nda_plugins.__file__).resolve().parent != ROOT / "nda_plugins":
        return  # another copy was imported before this file ran; leave it alone
    for name, folder in MAPPED.items():
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue  # an editable install maps it already
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(nda_plugins, name.rsplit(".", 1)[1], module)


_use_the_repository_code()


@pytest.fixture(autouse=True)
def _isolated_plugin_manager(monkeypatch):
    from nda_plugins import _manager

    monkeypatch.setenv(_manager.DISABLE_AUTOLOAD_ENV, "1")
    _manager.set_plugin_manager(None)
    yield
    _manager.set_plugin_manager(None)


def _load_benchmark(relative: str, name: str):
    """A script under ``benchmarks/`` (not a package) as a fresh module named ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("step_cases/pix2pix.py", "step_case_pix2pix")``: a benchmark script as a module."""
    return _load_benchmark
