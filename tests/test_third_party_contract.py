"""Third-party transforms go through the transform contract of ``test_transforms.py``.

A tiny plugin distribution (a ``.dist-info`` with an ``nda_plugins`` entry point, written to a tmp
folder) is put on ``PYTHONPATH`` of a child pytest run only, so nothing is installed in this
environment. It registers a sound transform (the built-in jigsaw under a new name), which must
pass the contract, and a broken one (returns its input), which must fail it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nda_plugins._manager import DISABLE_AUTOLOAD_ENV

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
from nda_plugins.hookspecs import hookimpl
from nda_plugins.transforms._builtin import BUILTINS


def _identity(**options):
    def transform(x, generator=None, **kwargs):
        return x.clone()  # breaks the contract: the "negative" equals its source
    return transform


@hookimpl
def nda_register_transforms(registry):
    registry.add("thirdparty_jigsaw", BUILTINS["jigsaw"])
    registry.add("thirdparty_identity", _identity)
'''


def _fake_distribution(site: Path) -> None:
    (site / "fake_nda_thirdparty.py").write_text(PLUGIN)
    info = site / "fake_nda_thirdparty-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-nda-thirdparty\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nda_plugins]\nfake_thirdparty = fake_nda_thirdparty\n")


@pytest.mark.slow
def test_contract_runs_on_entry_point_transforms(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site)
    env = {k: v for k, v in os.environ.items() if k != DISABLE_AUTOLOAD_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/test_transforms.py",
         "-k", "thirdparty and (never_equal or determinism or no_mutation)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    passed = [line for line in out.splitlines() if line.startswith("PASSED")]
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    # the sound third-party transform is collected and passes, under every selected contract test
    assert any("thirdparty_jigsaw" in line and "never_equal" in line for line in passed), out
    assert any("thirdparty_jigsaw" in line and "determinism" in line for line in passed), out
    assert not any("thirdparty_jigsaw" in line for line in failed), out
    # the broken one is collected too, and the contract catches it
    assert any("thirdparty_identity" in line and "never_equal" in line for line in failed), out
    assert proc.returncode == 1, out
