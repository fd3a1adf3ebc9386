"""Helpers for the integration tests: they need a real upstream checkout, named by an
environment variable, and skip without it."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def upstream_checkout(env: str) -> Path:
    value = os.environ.get(env)
    if not value:
        pytest.skip(f"set {env} to a checkout of the pinned upstream to run this test")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"{env}={value} is not a folder")
    return path


def copy_checkout(src: Path, dst: Path, commit: str | None) -> Path:
    """A private copy of the checkout: a local git clone at ``commit`` (or a plain copy)."""
    top = subprocess.run(["git", "-C", str(src), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()) == src.resolve():
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(src), str(dst)], check=True)
        rev = commit if commit and subprocess.run(
            ["git", "-C", str(dst), "cat-file", "-e", commit], capture_output=True).returncode == 0 else "HEAD"
        subprocess.run(["git", "-C", str(dst), "checkout", "-q", rev], check=True)
    else:
        shutil.copytree(src, dst)
    return dst


def tiny_dataset(path: Path, n: int = 16, res: int = 16, labels: bool = True) -> Path:
    """A zip of ``n`` RGB PNGs (``res`` x ``res``) with a dataset.json, as upstream's dataset_tool writes."""
    import numpy as np
    import PIL.Image

    with zipfile.ZipFile(path, "w") as z:
        meta = []
        for i in range(n):
            a = np.zeros((res, res, 3), np.uint8)
            a[..., i % 3] = 255
            a[(i * 3) % res:, : res // 2] = 40
            buf = io.BytesIO()
            PIL.Image.fromarray(a).save(buf, "png")
            z.writestr(f"img{i:04d}.png", buf.getvalue())
            meta.append([f"img{i:04d}.png", i % 2])
        if labels:
            z.writestr("dataset.json", json.dumps({"labels": meta}))
    return path


def tiny_dataset_dir(path: Path, **kw) -> Path:
    """The same images as :func:`tiny_dataset`, as a folder (for labelled runs: upstream reads a
    zip's dataset.json in the main process through a handle its forked loader workers share)."""
    zpath = tiny_dataset(path.with_suffix(".zip"), **kw)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(path)
    return path


def run_py(args, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


def run_training(checkout: Path, data: Path, outdir: Path, options: dict) -> tuple[Path, str, list[str]]:
    """Train with ``sg2_driver.py`` in ``checkout``; check it exits 0 and logs at least 3 ticks.

    Returns:
        ``(run_dir, stdout, tick_lines)``.
    """
    proc = run_py([str(HERE / "sg2_driver.py"), str(data), str(outdir), json.dumps(options)], cwd=checkout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ticks = [line for line in proc.stdout.splitlines() if line.startswith("tick ")]
    assert len(ticks) >= 3, proc.stdout[-3000:]
    return Path(re.search(r"^RUN_DIR (.+)$", proc.stdout, re.M).group(1)), proc.stdout, ticks


def assert_reverted(name: str, checkout: Path, before: dict) -> None:
    """Revert series ``name``: every patched file has its pinned hash again, and a git tree is clean."""
    from nda_plugins import _patching

    assert "reverted" in _patching.revert(name, checkout)
    assert {rel: _patching.sha256(checkout / rel) for rel in before} == before
    if (checkout / ".git").exists():
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                            capture_output=True, text=True, check=True)
        assert st.stdout == ""


def snapshot_state(checkout: Path, pkl: Path) -> dict:
    """Read ``snapshot['nda_plugins']`` with upstream's own loader (in a subprocess, cwd=checkout)."""
    code = (
        "import sys, json; sys.path.insert(0, '.'); import legacy\n"
        f"d = legacy.load_network_pkl(open({str(pkl)!r}, 'rb'))\n"
        "s = d.get('nda_plugins')\n"
        "sess = (s or {}).get('session') or {}\n"
        "own = sess.get('nda_plugins.session', {})\n"
        "print(json.dumps({'keys': sorted(d), 'step': s and s['step'], 'ada_p': s and s['ada_p'],\n"
        "  'num_advances': own.get('num_advances'), 'alpha': (own.get('anda') or {}).get('value')}))\n"
    )
    proc = run_py(["-c", code], cwd=checkout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
