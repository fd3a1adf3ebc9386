"""``nda patch`` logic on a synthetic upstream made in tmp_path: identify, check, atomic apply,
idempotence, refusal of dirty / unknown / partial trees, clean revert, and the click commands."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nda_plugins import _patching
from nda_plugins.cli.patch import patch as patch_cli

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", LC_ALL="C")


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def sha(p: Path):
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


PRISTINE = {
    "train.py": "import click\n\n\ndef main():\n    print('train')\n\n\nif __name__ == '__main__':\n    main()\n",
    "lib/loop.py": "def loop(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n",
    "README.md": "upstream\n",
}


@pytest.fixture
def upstream(tmp_path, monkeypatch):
    """A git repo at a 'pinned' commit plus a 2-patch series made from real commits."""
    repo = tmp_path / "up"
    for rel, text in PRISTINE.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    os.chmod(repo / "train.py", 0o755)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pinned")
    pinned = git(repo, "rev-parse", "HEAD").strip()
    (repo / "train.py").write_text(PRISTINE["train.py"].replace("import click\n", "import click\nimport nda_plugins\n"))
    git(repo, "commit", "-qam", "Add the flag")
    (repo / "lib/loop.py").write_text(PRISTINE["lib/loop.py"].replace("    return total\n", "    hook(total)\n    return total\n"))
    (repo / "lib/new.py").write_text("NEW = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "Call the hook")
    series = tmp_path / "patches" / "toy"
    series.mkdir(parents=True)
    git(repo, "format-patch", "-q", "--zero-commit", "-o", str(series), f"{pinned}..HEAD")
    names = sorted(p.name for p in series.glob("*.patch"))
    (series / "series").write_text("# why the first\n" + names[0] + "\n# why the second\n" + names[1] + "\n")
    files = {}
    for rel in ("train.py", "lib/loop.py", "lib/new.py"):
        patched = sha(repo / rel)
        files[rel] = {"pristine": None, "patched": patched}
    git(repo, "checkout", "-q", pinned)
    for rel in files:
        files[rel]["pristine"] = sha(repo / rel)
    (series / "upstream.json").write_text(json.dumps(
        {"name": "toy", "repo": "example/toy", "commit": pinned, "aliases": ["toy-upstream"], "files": files}))
    monkeypatch.setattr(_patching, "series_dirs", lambda: {"toy": series})
    return repo, series, pinned


def snapshot(repo: Path) -> dict:
    return {p.relative_to(repo).as_posix(): (p.read_bytes(), p.stat().st_mode)
            for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_series_parsing_and_listing(upstream):
    _, folder, pinned = upstream
    series = _patching.get_series("toy-upstream")  # by alias
    assert [p.name for p in series.patches] == sorted(p.name for p in folder.glob("*.patch"))
    assert series.comments[series.patches[1].name] == "why the second"
    assert series.commit == pinned
    assert set(_patching.touched_files(series.patches[1])) == {"lib/loop.py", "lib/new.py"}
    with pytest.raises(_patching.PatchError, match="unknown upstream 'nope'.*toy"):
        _patching.get_series("nope")


@pytest.mark.parametrize("text, msg", [("a.patch\na.patch\n", "twice"), ("notes.txt\n", "NNNN-subject.patch")])
def test_series_file_errors(text, msg):
    with pytest.raises(_patching.PatchError, match=msg):
        _patching.parse_series(text)


def test_status_identifies_pristine_checkout_by_commit_and_hashes(upstream):
    repo, _, pinned = upstream
    report = _patching.status(repo)
    assert report["upstream"] == "toy" and report["state"] == "pristine"
    assert report["commit"] == pinned and report["commit_matches"] is True
    assert json.loads(json.dumps(report)) == report  # JSON-friendly for `nda doctor --upstream`


def test_apply_is_idempotent_and_revert_restores_bytes_and_modes(upstream):
    repo, _, _ = upstream
    before = snapshot(repo)
    assert _patching.check("toy", repo)["ok"] is True
    assert "applied 2 patches" in _patching.apply("toy", repo)
    assert (repo / "lib/new.py").read_text() == "NEW = 1\n"
    assert "import nda_plugins" in (repo / "train.py").read_text()
    assert _patching.status(repo)["state"] == "applied"
    assert "already applied" in _patching.apply("toy", repo)
    assert _patching.check("toy", repo)["action"] == "revert"
    assert "reverted" in _patching.revert("toy", repo)
    assert snapshot(repo) == before
    assert git(repo, "status", "--porcelain") == ""
    assert "nothing to revert" in _patching.revert("toy", repo)


def test_refuses_dirty_tree_unless_allowed(upstream):
    repo, _, _ = upstream
    (repo / "README.md").write_text("local edit\n")
    before = snapshot(repo)
    with pytest.raises(_patching.PatchError, match="local changes in tracked files: README.md"):
        _patching.apply("toy", repo)
    assert snapshot(repo) == before
    _patching.apply("toy", repo, allow_dirty=True)
    assert _patching.status(repo)["state"] == "applied"
    _patching.revert("toy", repo)  # other local changes do not block a revert
    assert (repo / "README.md").read_text() == "local edit\n"


def test_refuses_unknown_tree_with_clear_message(upstream):
    repo, _, _ = upstream
    (repo / "lib/loop.py").write_text("something else\n")
    before = snapshot(repo)
    with pytest.raises(_patching.PatchError, match=r"pinned commit .* lib/loop.py changed outside this series"):
        _patching.apply("toy", repo)
    git(repo, "commit", "-qam", "a different upstream")
    with pytest.raises(_patching.PatchError, match="not a known toy checkout.*lib/loop.py"):
        _patching.apply("toy", repo)
    assert snapshot(repo) == before
    assert _patching.status(repo)["upstream"] is None


def test_refuses_partially_patched_tree(upstream):
    repo, series, _ = upstream
    subprocess.run(["git", "apply", str(sorted(series.glob("*.patch"))[0])], cwd=repo, check=True)
    with pytest.raises(_patching.PatchError, match="partially patched.*train.py"):
        _patching.apply("toy", repo)
    assert _patching.status(repo)["state"] == "partial"


def test_failed_patch_leaves_tree_untouched(upstream):
    repo, series, _ = upstream
    second = sorted(series.glob("*.patch"))[1]
    second.write_text(second.read_text().replace("     total = 0", "     total = 42"))  # context no longer matches
    before = snapshot(repo)
    report = _patching.check("toy", repo)
    assert report["ok"] is False and second.name in report["error"]
    with pytest.raises(_patching.PatchError, match=f"{second.name} does not apply"):
        _patching.apply("toy", repo)
    assert snapshot(repo) == before


def test_failure_while_writing_restores_every_file(upstream, monkeypatch):
    repo, _, _ = upstream
    before = snapshot(repo)
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(_patching.os, "replace", flaky)
    with pytest.raises(_patching.PatchError, match="disk full.*rolled back"):
        _patching.apply("toy", repo)
    assert snapshot(repo) == before


def test_tree_without_git_is_identified_by_hashes(upstream, tmp_path):
    repo, _, _ = upstream
    plain = tmp_path / "tarball"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"))
    report = _patching.status(plain)
    assert report["upstream"] == "toy" and report["commit"] is None
    _patching.apply("toy", plain)
    _patching.revert("toy", plain)
    assert snapshot(plain) == snapshot(repo)


def test_cli_commands(upstream):
    repo, _, _ = upstream
    runner = CliRunner()
    out = runner.invoke(patch_cli, ["list", "-v"])
    assert out.exit_code == 0 and "toy (toy-upstream)" in out.output and "why the first" in out.output
    out = runner.invoke(patch_cli, ["check", "toy", str(repo)])
    assert out.exit_code == 0 and "would apply cleanly" in out.output
    out = runner.invoke(patch_cli, ["apply", "toy", str(repo)])
    assert out.exit_code == 0 and "applied 2 patches" in out.output
    out = runner.invoke(patch_cli, ["apply", "toy", str(repo)])
    assert out.exit_code == 0 and "already applied" in out.output
    out = runner.invoke(patch_cli, ["status", str(repo), "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["state"] == "applied"
    out = runner.invoke(patch_cli, ["revert", "toy", str(repo)])
    assert out.exit_code == 0 and "reverted" in out.output
    (repo / "README.md").write_text("dirty\n")
    out = runner.invoke(patch_cli, ["apply", "toy", str(repo)])
    assert out.exit_code == 1 and "local changes" in out.output
    out = runner.invoke(patch_cli, ["apply", "nope", str(repo)])
    assert out.exit_code == 1 and "unknown upstream" in out.output


def test_top_level_cli_loads_patch_group():
    from nda_plugins.cli import main

    out = CliRunner().invoke(main, ["patch", "--help"])
    assert out.exit_code == 0 and "apply" in out.output and "revert" in out.output


def test_series_with_subdir_accepts_the_repository_root(upstream, tmp_path, monkeypatch):
    repo, folder, _ = upstream
    meta = json.loads((folder / "upstream.json").read_text())
    (folder / "upstream.json").write_text(json.dumps(dict(meta, subdir="fork")))
    outer = tmp_path / "outer"
    shutil.copytree(repo, outer / "fork", ignore=shutil.ignore_patterns(".git"))
    assert _patching.status(outer)["root"] == str(outer / "fork")
    _patching.apply("toy", outer)
    assert _patching.status(outer / "fork")["state"] == "applied"


def fake_ops_checkout(tmp_path):
    ops = tmp_path / "torch_utils" / "ops"
    ops.mkdir(parents=True)
    for name in ("__init__", "bias_act", "upfirdn2d"):
        (ops / f"{name}.py").write_text("def _init():\n    return True\n")
    (tmp_path / "torch_utils" / "__init__.py").write_text("")
    return tmp_path


@pytest.mark.parametrize("probe, code, text", [
    ({"cuda": False}, 0, "only built and used on CUDA"),
    ({"cuda": True, "bias_act": {"built": True, "error": None}, "upfirdn2d": {"built": True, "error": None}}, 0,
     "upfirdn2d  built"),
    ({"cuda": True, "bias_act": {"built": False, "error": "Failed to build CUDA kernels for bias_act"},
      "upfirdn2d": {"built": True, "error": None}}, 1, "bias_act did not build"),
])
def test_build_ops_reports_what_upstreams_init_said(tmp_path, monkeypatch, probe, code, text):
    root = fake_ops_checkout(tmp_path)
    seen = {}

    def fake_run(args, cwd, **kw):
        seen["cwd"], seen["code"] = cwd, args[-1]
        return subprocess.CompletedProcess(args, 0, stdout=json.dumps(probe) + "\n", stderr="")

    monkeypatch.setattr(_patching.subprocess, "run", fake_run)
    out = CliRunner().invoke(patch_cli, ["build-ops", str(root)])
    assert out.exit_code == code and text in out.output
    assert seen["cwd"] == root and "_init()" in seen["code"]  # upstream's own build entry points


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_lock_state_tells_held_stale_free_and_unknown(tmp_path, monkeypatch):
    fcntl = pytest.importorskip("fcntl")
    lock = tmp_path / "lock"
    lock.write_text("")
    monkeypatch.setattr(_patching, "torch_waits_on_lock_files", lambda: True)  # torch <= 2.13
    assert _patching.lock_state(lock) == _patching.LOCK_STALE
    fd = os.open(lock, os.O_RDONLY)  # what a torch <= 2.13 build does while it holds the lock
    try:
        assert _patching.lock_state(lock) == _patching.LOCK_HELD
    finally:
        os.close(fd)
    monkeypatch.setattr(_patching, "_open_here", lambda path: None)  # no /proc
    assert _patching.lock_state(lock) == _patching.LOCK_UNKNOWN
    monkeypatch.setattr(_patching, "torch_waits_on_lock_files", lambda: False)  # torch 2.14: flock
    assert _patching.lock_state(lock) == _patching.LOCK_FREE
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a torch 2.14 build does while it holds the lock
        assert _patching.lock_state(lock) == _patching.LOCK_HELD
    finally:
        os.close(fd)
    assert _patching.lock_state(lock) == _patching.LOCK_FREE


_HOLD_LIKE_TORCH = r"""
import sys, time
from pathlib import Path
from nda_plugins import _patching
if _patching.torch_waits_on_lock_files():  # torch <= 2.13: the file is the lock
    from torch.utils.file_baton import FileBaton
    held = FileBaton(sys.argv[1])
    assert held.try_acquire()
else:  # torch 2.14: an flock on the file (released if the lock object is collected: keep it)
    from torch.utils._filelock import FileLock
    held = FileLock(sys.argv[1])
    held.acquire()
Path(sys.argv[1] + ".ready").write_text("")
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_lock_state_of_a_build_lock_taken_by_this_torch_then_killed(tmp_path):
    """The installed torch's own lock, held by a process that is then killed (SIGKILL, as the OOM
    killer or a scheduler would): held while it lives; afterwards stale where this torch would
    wait on the file, free where it locks with flock."""
    lock = tmp_path / "bias_act_plugin" / "lock"
    lock.parent.mkdir()
    child = subprocess.Popen([sys.executable, "-c", _HOLD_LIKE_TORCH, str(lock)])
    try:
        for _ in range(600):
            if Path(str(lock) + ".ready").exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the lock holder exited early"
        assert _patching.lock_state(lock) == _patching.LOCK_HELD
    finally:
        child.kill()
        child.wait()
    assert lock.exists()
    waits = _patching.torch_waits_on_lock_files()
    assert _patching.lock_state(lock) == (_patching.LOCK_STALE if waits else _patching.LOCK_FREE)


@pytest.mark.parametrize("source, waits", [("with FileLock(os.path.join(d, 'lock')):", False),
                                           ("baton = FileBaton(os.path.join(d, 'lock'))", True), (None, True)])
def test_torch_waits_on_lock_files_reads_the_builder(tmp_path, monkeypatch, source, waits):
    import importlib.util
    import types

    origin = tmp_path / "cpp_extension.py"
    if source is not None:
        origin.write_text(source)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: types.SimpleNamespace(origin=str(origin)))
    assert _patching.torch_waits_on_lock_files() is waits


def test_fused_op_locks_look_where_this_python_and_torch_build(tmp_path, monkeypatch):
    import torch

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    here = tmp_path / "torch_extensions" / f"py{sys.version_info.major}{sys.version_info.minor}_cu130"
    other = tmp_path / "torch_extensions" / "py27_cu130"
    for folder in (here / "bias_act_plugin_v1", here / "upfirdn2d_plugin", here / "other_plugin", other / "bias_act_plugin"):
        folder.mkdir(parents=True)
        (folder / "lock").write_text("")
    monkeypatch.setattr(_patching, "torch_waits_on_lock_files", lambda: True)
    assert _patching.fused_op_locks() == [(here / "bias_act_plugin_v1" / "lock", "stale"),
                                          (here / "upfirdn2d_plugin" / "lock", "stale")]
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(other))  # then the ops' folders sit right in it
    assert _patching.fused_op_locks() == [(other / "bias_act_plugin" / "lock", "stale")]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_build_ops_refuses_a_stale_lock_and_clears_it_when_asked(tmp_path, monkeypatch):
    import torch

    root = fake_ops_checkout(tmp_path / "checkout")
    lock = tmp_path / "ext" / "upfirdn2d_plugin" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "ext"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_patching, "torch_waits_on_lock_files", lambda: True)
    probes = []
    built = {"cuda": True, "bias_act": {"built": True, "error": None}, "upfirdn2d": {"built": True, "error": None}}
    monkeypatch.setattr(_patching.subprocess, "run", lambda args, **kw: probes.append(args) or subprocess.CompletedProcess(
        args, 0, stdout=json.dumps(built) + "\n", stderr=""))

    out = CliRunner().invoke(patch_cli, ["build-ops", str(root)])
    assert out.exit_code == 1 and "stale build lock: " + str(lock) in out.output and "--clear-stale-locks" in out.output
    assert lock.exists() and not probes  # refused before building: no wait behind the lock

    fd = os.open(lock, os.O_RDONLY)  # a build holds it: build-ops waits for that build
    try:
        out = CliRunner().invoke(patch_cli, ["build-ops", str(root), "--clear-stale-locks"])
    finally:
        os.close(fd)
    assert out.exit_code == 0 and f"waiting for the build that holds {lock}" in out.output
    assert lock.exists() and len(probes) == 1

    out = CliRunner().invoke(patch_cli, ["build-ops", str(root), "--clear-stale-locks"])
    assert out.exit_code == 0 and f"deleted stale build lock {lock}" in out.output and "upfirdn2d  built" in out.output
    assert not lock.exists() and len(probes) == 2


def test_fused_ops_errors(tmp_path, monkeypatch):
    with pytest.raises(_patching.PatchError, match="no torch_utils/ops/bias_act.py"):
        _patching.fused_ops(tmp_path)
    root = fake_ops_checkout(tmp_path)
    monkeypatch.setattr(_patching.subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, 1, stdout="", stderr="ImportError: boom"))
    assert "boom" in _patching.fused_ops(root)["error"]


@pytest.mark.slow
def test_fused_ops_probe_runs_upstreams_init(tmp_path):
    import torch

    report = _patching.fused_ops(fake_ops_checkout(tmp_path))
    assert report["cuda"] is torch.cuda.is_available()
    if report["cuda"]:
        assert report["bias_act"]["built"] and report["upfirdn2d"]["built"]


@pytest.mark.parametrize("adapter", ["stylegan2_ada", "diffaugment", "insgen", "pix2pix"])
def test_launch_scripts_exist_and_check_their_arguments(adapter, tmp_path):
    from nda_plugins.adapters import __file__ as adapters_init

    script = Path(adapters_init).parent / adapter / "train_nda.sh"
    assert script.is_file()
    text = script.read_text()
    series = {"stylegan2_ada": "stylegan2-ada", "diffaugment": "data-efficient-gans", "insgen": "insgen",
              "pix2pix": "pix2pix"}[adapter]
    assert f"nda_prepare {series} " in text and _patching.get_series(series)
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr
    proc = subprocess.run(["sh", str(script), str(tmp_path / "missing")], capture_output=True, text=True)
    assert proc.returncode == 2
    # A folder that is no checkout: the shared helper (adapters/_launch.sh) runs `nda patch apply`
    # with $PYTHON, which refuses it; nothing after it runs.
    (tmp_path / "data").mkdir()
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["sh", str(script), str(tmp_path), str(tmp_path / "data")], capture_output=True,
                          text=True, env=env)
    assert proc.returncode != 0 and series in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------
# Atomicity under kills and failures
# ------------------------------------------------------------------------------------------

_DRIVER = """
import sys
from pathlib import Path
from nda_plugins import _patching
_patching.series_dirs = lambda: {"toy": Path(sys.argv[1])}
getattr(_patching, sys.argv[2])("toy", sys.argv[3])
"""


def _drive(action, repo, series, fault=None, kill_after=None):
    """Run apply/revert in a child; with ``fault`` it dies at that point, with ``kill_after`` at a time."""
    env = dict(os.environ)
    env.pop("NDA_PATCH_FAULT", None)
    if fault:
        env["NDA_PATCH_FAULT"] = fault
    # cwd outside the repository: `python -c` puts cwd first on sys.path, and the repository's
    # nda_plugins/ lacks nda_plugins.patches unless installed (editable or not)
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER, str(series), action, str(repo)], env=env,
                            cwd=Path(series).parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return proc.returncode


def _stale_stages():
    return {p for p in Path(tempfile.gettempdir()).glob("nda-patch-*")}


@pytest.mark.slow
@pytest.mark.parametrize("action", ["apply", "revert"])
def test_kill_at_any_point_is_recovered_by_the_next_call(upstream, action):
    """SIGKILL at every stage of a run (and at random times): the next apply or revert finishes the job."""
    repo, series, _ = upstream
    pristine = snapshot(repo)
    _patching.apply("toy", repo)
    patched = snapshot(repo)
    if action == "apply":
        _patching.revert("toy", repo)
    start, goal = (pristine, patched) if action == "apply" else (patched, pristine)
    stages_before = _stale_stages()
    n = len(_patching.get_series("toy").files)
    points = ["kill:stage", "kill:journal"] + [f"kill:swap:{i}" for i in range(n + 1)]
    rng = random.Random(0)
    for i, point in enumerate(points + [None] * 3):
        if point is None:  # a kill at a random moment of an unfaulted run
            rc = _drive(action, repo, series, kill_after=rng.uniform(0.0, 1.5))
        else:
            rc = _drive(action, repo, series, fault=point)
            assert rc == -signal.SIGKILL, point
        assert _stale_stages() == stages_before, point
        # Alternate which command cleans up: the same one again, or the other one.
        if i % 2 == 0 or rc == 0:
            _patching.apply("toy", repo) if action == "apply" else _patching.revert("toy", repo)
            assert snapshot(repo) == goal, point
            _patching.revert("toy", repo) if action == "apply" else _patching.apply("toy", repo)
        else:  # the other command: rolls back, then has nothing left to do (or undoes a finished run)
            getattr(_patching, "revert" if action == "apply" else "apply")("toy", repo)
        assert snapshot(repo) == start, point
        assert not (repo / _patching.WORK_DIR).exists()
    # A kill during the rollback of a kill: the journal stays until the rollback is complete.
    assert _drive(action, repo, series, fault="kill:swap:2") == -signal.SIGKILL
    assert _drive(action, repo, series, fault="kill:rollback:1") == -signal.SIGKILL
    assert (repo / _patching.WORK_DIR / "journal.json").is_file()
    assert _drive(action, repo, series) == 0
    assert snapshot(repo) == goal
    getattr(_patching, "revert" if action == "apply" else "apply")("toy", repo)
    assert snapshot(repo) == start
    # A dry run killed midway leaves its stage in the temporary folder; the next call sweeps it.
    assert _drive("check", repo, series, fault="kill:check") == -signal.SIGKILL
    assert len(_stale_stages() - stages_before) == 1
    assert _patching.check("toy", repo)["ok"]
    assert _stale_stages() == stages_before


@pytest.mark.parametrize("where", ["fail:journal", "fail:swap:0", "fail:swap:1", "fail:swap:3", "tmpdir"])
def test_commit_stage_failing_midway_rolls_back_and_says_so(upstream, monkeypatch, where):
    repo, _, _ = upstream
    before = snapshot(repo)
    real_commit = _patching._commit_stage
    if where == "tmpdir":  # a folder sits where the swap's temporary file goes

        def commit_with_obstacle(series, stage, root, **kw):
            (root / _patching.WORK_DIR / "swap.tmp").mkdir()
            return real_commit(series, stage, root, **kw)

        monkeypatch.setattr(_patching, "_commit_stage", commit_with_obstacle)
    else:
        monkeypatch.setenv("NDA_PATCH_FAULT", where)
    with pytest.raises(_patching.PatchError, match="rolled back|injected"):
        _patching.apply("toy", repo)
    assert snapshot(repo) == before and not (repo / _patching.WORK_DIR).exists()
    monkeypatch.delenv("NDA_PATCH_FAULT", raising=False)
    monkeypatch.setattr(_patching, "_commit_stage", real_commit)
    result = CliRunner().invoke(patch_cli, ["apply", "toy", str(repo)])
    assert result.exit_code == 0, result.output


def test_failed_rollback_keeps_the_journal_for_the_next_call(upstream, monkeypatch):
    repo, _, _ = upstream
    pristine = snapshot(repo)
    monkeypatch.setenv("NDA_PATCH_FAULT", "fail:swap:2")
    real_rollback = _patching._rollback
    monkeypatch.setattr(_patching, "_rollback", lambda root, journal: (_ for _ in ()).throw(OSError("read-only")))
    with pytest.raises(_patching.PatchError, match="rolling back failed too.*journal is kept"):
        _patching.apply("toy", repo)
    assert (repo / _patching.WORK_DIR / "journal.json").is_file()
    monkeypatch.setattr(_patching, "_rollback", real_rollback)
    monkeypatch.delenv("NDA_PATCH_FAULT")
    report = _patching.status(repo)
    assert report["state"] != "pristine" and report["interrupted"] and "rolls it back" in report["message"]
    assert "interrupted" in _patching.check("toy", repo)["error"]
    msg = _patching.revert("toy", repo)
    assert "rolled back an interrupted apply" in msg and snapshot(repo) == pristine
    (repo / _patching.WORK_DIR).mkdir()
    (repo / _patching.WORK_DIR / "journal.json").write_text("{not json")
    result = CliRunner().invoke(patch_cli, ["apply", "toy", str(repo)])
    assert result.exit_code == 1 and "journal" in result.output and "Traceback" not in result.output


def test_a_second_run_on_the_same_checkout_is_refused(upstream):
    fcntl = pytest.importorskip("fcntl")
    repo, _, _ = upstream
    before = snapshot(repo)
    fd = os.open(repo, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(_patching.PatchError, match="another `nda patch` is working on"):
            _patching.apply("toy", repo)
        assert snapshot(repo) == before
    finally:
        os.close(fd)
    _patching.apply("toy", repo)
