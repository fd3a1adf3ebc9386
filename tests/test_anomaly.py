"""nda_plugins.anomaly and `nda anomaly-score` on a tiny module checkpoint given with a factory."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from nda_plugins import anomaly
from nda_plugins._png import write_png
from nda_plugins.cli import main

FACTORY = textwrap.dedent('''
    import torch

    class RedScore(torch.nn.Module):
        """score = gain * mean red channel (gain loaded from the checkpoint)."""
        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(()))
        def forward(self, x):
            return self.gain * x[:, 0].mean(dim=(1, 2))

    def make():
        return RedScore()

    def not_a_module():
        return 3
''')


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    """in/: reddish images; ood_dark/: darker red; ood_same/: the in-distribution's twin."""
    g = torch.Generator().manual_seed(0)

    def write(name, red_low, red_high, n=12, sub=None):
        d = tmp_path / name / (sub or "")
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = torch.randint(0, 256, (8, 8, 3), generator=g, dtype=torch.uint8)
            img[..., 0] = torch.randint(red_low, red_high, (8, 8), generator=g, dtype=torch.uint8)
            write_png(d / f"{i:03d}.png", img)
        return tmp_path / name

    paths = {"in": write("in", 150, 256, sub="class0"), "dark": write("ood_dark", 0, 100),
             "same": write("ood_same", 150, 256)}
    (tmp_path / "tiny_scorer.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tiny_scorer", None)
    return paths


def test_image_folder_is_read_recursively_in_minus1_1(folders):
    x = anomaly.load_image_folder(folders["in"])
    assert x.shape == (12, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert anomaly.load_image_folder(folders["in"], size=4, limit=5).shape == (5, 3, 4, 4)
    with pytest.raises(ValueError, match="must be a folder of images"):
        anomaly.load_image_folder(folders["in"].parent / "tiny_scorer.py")
    (folders["in"].parent / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        anomaly.load_image_folder(folders["in"].parent / "empty")
    with pytest.raises(ValueError, match="size must be"):
        anomaly.load_image_folder(folders["in"], size=0)


def test_report_auroc_separates_and_chance(folders):
    scorer = anomaly.load_scorer("tiny_scorer:make")
    result = anomaly.report(scorer, folders["in"], [folders["dark"], folders["same"]], batch_size=5)
    dark, same = result["ood"]
    assert dark["auroc"] == 1.0 and dark["n"] == 12
    assert 0.2 < same["auroc"] < 0.8
    assert result["mean_auroc"] == pytest.approx((dark["auroc"] + same["auroc"]) / 2)
    table = anomaly.format_table(result)
    assert "AUROC" in table and "1.0000" in table


def test_cli_loads_the_checkpoint_through_the_factory(folders, tmp_path):
    ckpt = tmp_path / "d.pt"
    torch.save({"state_dict": {"gain": torch.tensor(-1.0)}}, ckpt)  # flips the score: AUROC 0
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["anomaly-score", "--factory", "tiny_scorer:make", "--checkpoint", str(ckpt),
                                    "--in", str(folders["in"]), "--ood", str(folders["dark"]),
                                    "--ood", str(folders["same"]), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "anomaly.json").read_text())
    assert result["ood"][0]["auroc"] == 0.0  # the checkpoint's gain was loaded
    assert (out / "anomaly.png").stat().st_size > 0
    assert json.loads(res.stdout)["ood"][0]["path"] == str(folders["dark"])


@pytest.mark.parametrize("args,message", [
    (["--factory", "tiny_scorer"], "package.module:callable"),
    (["--factory", "tiny_scorer:nope"], "has no attribute"),
    (["--factory", "tiny_scorer:not_a_module"], "must return a torch.nn.Module"),
    ([], "exactly one of --biggan"),
])
def test_cli_errors_are_one_line_messages(folders, args, message):
    res = CliRunner().invoke(main, ["anomaly-score", *args, "--in", str(folders["in"]), "--ood", str(folders["dark"])])
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output


def test_cli_refuses_a_checkpoint_that_does_not_fit(folders, tmp_path):
    ckpt = tmp_path / "bad.pt"
    torch.save({"other": torch.zeros(2)}, ckpt)
    res = CliRunner().invoke(main, ["anomaly-score", "--factory", "tiny_scorer:make", "--checkpoint", str(ckpt),
                                    "--in", str(folders["in"]), "--ood", str(folders["dark"])])
    assert res.exit_code != 0 and "does not fit" in res.output


def test_biggan_scorer_names_missing_files(tmp_path, folders):
    res = CliRunner().invoke(main, ["anomaly-score", "--biggan", str(tmp_path), "--upstream", str(tmp_path),
                                    "--in", str(folders["in"]), "--ood", str(folders["dark"])])
    assert res.exit_code != 0 and "D.pth is missing" in res.output
