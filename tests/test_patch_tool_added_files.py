"""``nda patch`` with a series that adds a new file (pix2pix): pristine = absent, identification
through upstream.json ``requires``. Uses the shipped pix2pix series on a stand-in checkout that has
only the marker lines ``requires`` asks for (no upstream code)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from nda_plugins import _patching
from nda_plugins.cli.patch import patch as patch_cli

NEW = "models/pix2pix_nda_model.py"


def git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "p2p"
    for rel, marker in _patching.get_series("pix2pix").requires.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# stand-in\n{marker}\n")
    git(tmp_path, "init", "-q", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "stand-in")
    return root


def test_added_file_apply_revert_and_idempotence(checkout):
    series, st = _patching.identify(checkout)
    assert series.name == "pix2pix" and st["state"] == _patching.PRISTINE
    assert "applied 1 patches" in _patching.apply("pix2pix", checkout)
    assert "from nda_plugins.adapters.pix2pix import model" in (checkout / NEW).read_text()
    assert _patching.sha256(checkout / NEW) == series.files[NEW]["patched"]
    assert "already applied" in _patching.apply("pix2pix", checkout)
    assert _patching.status(checkout)["state"] == _patching.APPLIED
    assert "reverted" in _patching.revert("pix2pix", checkout)
    assert not (checkout / NEW).exists()
    assert git(checkout, "status", "--porcelain") == ""  # pinned bytes, nothing left behind
    assert "nothing to revert" in _patching.revert("pix2pix", checkout)


def test_refuses_a_foreign_file_where_the_series_adds_one(checkout):
    (checkout / NEW).write_text("# someone else's model\n")
    with pytest.raises(_patching.PatchError, match=NEW):
        _patching.apply("pix2pix", checkout)
    with pytest.raises(_patching.PatchError, match=NEW):
        _patching.revert("pix2pix", checkout)
    assert (checkout / NEW).read_text() == "# someone else's model\n"


@pytest.mark.parametrize("damage", ["delete", "edit"])
def test_required_upstream_files_identify_the_checkout(checkout, damage):
    rel = "models/pix2pix_model.py"
    if damage == "delete":
        (checkout / rel).unlink()
    else:
        (checkout / rel).write_text("class SomethingElse:\n")
    st = _patching.series_state(_patching.get_series("pix2pix"), checkout)
    assert st["state"] == _patching.MODIFIED
    assert st["files"][rel] == ("missing" if damage == "delete" else "unknown")
    with pytest.raises(_patching.PatchError, match=rel):
        _patching.apply("pix2pix", checkout)
    assert not (checkout / NEW).exists()


def test_an_unrelated_folder_is_not_taken_for_pix2pix(tmp_path):
    (tmp_path / "train.py").write_text("print('hello')\n")
    assert _patching.status(tmp_path)["upstream"] is None


def test_cli_apply_check_revert(checkout):
    runner = CliRunner()
    assert "would apply" in runner.invoke(patch_cli, ["check", "pix2pix", str(checkout)]).output
    res = runner.invoke(patch_cli, ["apply", "pix2pix", str(checkout)])
    assert res.exit_code == 0 and "applied" in res.output
    res = runner.invoke(patch_cli, ["status", str(checkout)])
    assert "pix2pix: applied" in res.output
    assert runner.invoke(patch_cli, ["revert", "pix2pix", str(checkout)]).exit_code == 0
    assert not (checkout / NEW).exists()


def test_launch_script_patches_then_trains(checkout, tmp_path):
    from nda_plugins.adapters import __file__ as adapters_init

    script = Path(adapters_init).parent / "pix2pix" / "train_nda.sh"
    assert "patch apply pix2pix " in script.read_text()
    proc = subprocess.run(["sh", str(script), str(checkout)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr
    # a stand-in train.py that prints its arguments: the script patched the checkout and added the recipe
    (checkout / "train.py").write_text("import sys\nprint(' '.join(sys.argv[1:]))\n# create_model\n")
    git(checkout, "commit", "-qam", "stand-in train.py")
    data = tmp_path / "facades"
    data.mkdir()
    import sys

    proc = subprocess.run(["sh", str(script), str(checkout), str(data), "--n_epochs", "1"], capture_output=True,
                          text=True, env={**__import__("os").environ, "PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert (checkout / NEW).is_file()
    assert f"--dataroot {data} --name facades_pix2pix_nda --model pix2pix_nda --direction BtoA " \
           "--nda jigsaw --nda_weight 0.75 --n_epochs 1" in proc.stdout
