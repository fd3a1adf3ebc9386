"""Build the wheel and check that a non-editable install has adapters, patches and the CLI.

``adapters/`` and ``patches/`` are top-level folders of the repository but install as
``nda_plugins.adapters`` / ``nda_plugins.patches`` through a hand-written ``packages`` list in
``pyproject.toml``; this test fails when a new sub-package or patch file would be left out, or
when a top-level ``adapters`` module (a name another PyPI library owns) would be installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Folder in the repository -> where its files land in the wheel.
MAPPING = {"nda_plugins": "nda_plugins", "adapters": "nda_plugins/adapters", "patches": "nda_plugins/patches"}
_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "nda-runs", "*.pyc", ".whl"
)


def _ignored_by_git(paths: list[Path]) -> set[Path]:
    """The subset of ``paths`` that git ignores (scratch files nobody ships); empty without git."""
    if not (REPO / ".git").exists() or not paths:
        return set()
    proc = subprocess.run(
        ["git", "check-ignore", "--stdin"], cwd=REPO, input="\n".join(str(p) for p in paths),
        capture_output=True, text=True,
    )
    return {Path(line) for line in proc.stdout.splitlines() if line}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the source tree (so no build/ or egg-info lands in the repo)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    for folder in MAPPING:
        shutil.copytree(REPO / folder, src / folder, ignore=_IGNORE)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"wheel build failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("nda_plugins-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _repo_files(pattern_filter) -> list[Path]:
    files = []
    for folder in MAPPING:
        for path in sorted((REPO / folder).rglob("*")):
            rel = path.relative_to(REPO)
            if any(part in {"__pycache__", ".pytest_cache"} for part in rel.parts):
                continue
            if path.is_file() and pattern_filter(path):
                files.append(rel)
    ignored = _ignored_by_git(files)
    return [f for f in files if f not in ignored]


def _in_wheel(rel: Path) -> str:
    top, *rest = rel.parts
    return "/".join([MAPPING[top], *rest])


def test_namespace_packages_are_inside_nda_plugins(names):
    assert "nda_plugins/__init__.py" in names
    assert "nda_plugins/adapters/__init__.py" in names
    assert "nda_plugins/patches/__init__.py" in names
    tops = {name.split("/", 1)[0] for name in names}
    assert "adapters" not in tops and "patches" not in tops, sorted(tops)
    assert tops <= {"nda_plugins"} | {t for t in tops if t.endswith((".dist-info", ".data"))}, sorted(tops)


def test_every_package_and_module_is_shipped(names):
    """Guards the hand-written ``packages`` list: each folder with __init__.py, each module."""
    py_files = _repo_files(lambda p: p.suffix == ".py")
    packages = [f.parent for f in py_files if f.name == "__init__.py"]
    assert packages, "no packages found"
    missing = [str(f) for f in py_files if _in_wheel(f) not in names and f.parent in packages]
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"


def test_every_patch_and_series_file_is_shipped(names):
    data = _repo_files(lambda p: p.suffix == ".patch" or p.name == "series")
    missing = [str(f) for f in data if f.parts[0] == "patches" and _in_wheel(f) not in names]
    assert not missing, f"patch data not in the wheel (check package-data in pyproject.toml): {missing}"


def test_every_launch_script_is_shipped(names):
    scripts = _repo_files(lambda p: p.suffix == ".sh")
    missing = [str(f) for f in scripts if f.parts[0] == "adapters" and _in_wheel(f) not in names]
    assert "nda_plugins/adapters/_launch.sh" in names
    assert not missing, f"launch scripts not in the wheel (check package-data in pyproject.toml): {missing}"


def test_console_script_is_declared(wheel):
    with zipfile.ZipFile(wheel) as zf:
        ep = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(ep).decode()
    assert "[console_scripts]" in text and "nda = nda_plugins.cli:main" in text


def test_unpacked_wheel_works_without_the_source_tree(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import nda_plugins, nda_plugins.adapters, nda_plugins.patches
        from nda_plugins.patches import series_dirs
        site = Path(sys.argv[1]).resolve()
        for mod in (nda_plugins, nda_plugins.adapters, nda_plugins.patches):
            assert Path(mod.__file__).resolve().is_relative_to(site), mod.__file__
        for name, folder in series_dirs().items():
            assert (folder / "series").is_file(), name
        try:
            import adapters
        except ImportError:
            pass
        else:
            assert not Path(adapters.__file__).resolve().is_relative_to(site), "top-level adapters installed"
        from click.testing import CliRunner
        from nda_plugins.cli import main
        result = CliRunner().invoke(main, ["list", "--json"])
        assert result.exit_code == 0, result.output
        print(sorted(series_dirs()))
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site), "NDA_PLUGINS_DISABLE_AUTOLOAD": "1"}
    # -I would drop PYTHONPATH; -s skips user site; the venv's site-packages still provides torch.
    # The editable install's finder would shadow the unpacked wheel, so it is removed from sys.meta_path.
    prelude = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if 'editable' not in type(f).__module__.lower() and 'editable' not in repr(f).lower()]; "
        "sys.path[:] = [p for p in sys.path if '__editable__' not in p]; "
        "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('nda_plugins')]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-s", "-c", prelude + code, str(site)],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")
    expected = sorted(p.name for p in (REPO / "patches").iterdir() if (p / "series").is_file())
    assert proc.stdout.splitlines()[0] == str(expected)


def test_the_tests_run_this_repositorys_code():
    """conftest.py makes `import nda_plugins` give this tree, with adapters/ and patches/ mapped to
    their package names, under an editable or a plain install (see the README's Development)."""
    import nda_plugins
    import nda_plugins.adapters
    import nda_plugins.patches

    root = Path(__file__).resolve().parents[1]
    assert Path(nda_plugins.__file__).resolve().parent == root / "nda_plugins"
    assert Path(nda_plugins.adapters.__file__).resolve().parent == root / "adapters"
    assert Path(nda_plugins.patches.__file__).resolve().parent == root / "patches"
