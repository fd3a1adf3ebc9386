"""BigGAN-PyTorch end to end: patch a clean checkout, train a tiny model on CPU with NDA
(unconditional and conditional), save, resume with NDA state continuing, score the checkpoint
with `nda anomaly-score`, revert to the pinned bytes.

Needs ``NDA_UPSTREAM_BIGGAN`` (a checkout of ajbrock/BigGAN-PyTorch; the pinned commit is
checked out in a private copy) and torchvision, scipy, h5py, tqdm (upstream's imports).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from nda_plugins import _patching

from .conftest import assert_reverted, copy_checkout, run_py, upstream_checkout

pytestmark = pytest.mark.slow

TINY = ["--dataset", "I32", "--batch_size", "4", "--num_D_steps", "2", "--num_workers", "0", "--no_pin_memory",
        "--shuffle", "--G_ch", "4", "--D_ch", "4", "--dim_z", "8", "--shared_dim", "8", "--G_attn", "0",
        "--D_attn", "0", "--save_every", "4", "--test_every", "0", "--num_save_copies", "0", "--seed", "0",
        "--pbar", "mine", "--weights_root", "w", "--samples_root", "s", "--logs_root", "l"]


def image_folder(root: Path, classes: int = 2, per_class: int = 16, *, dark: bool = False) -> Path:
    import numpy as np
    import PIL.Image

    for c in range(classes):
        d = root / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.full((32, 32, 3), 20 if dark else 0, np.uint8)
            if not dark:
                a[..., (i + c) % 3] = 255
                a[(i * 3) % 32:, :16] = 40
            else:
                a[::2] = (i * 7) % 255
            PIL.Image.fromarray(a).save(d / f"img{i:03d}.png")
    return root


def train(checkout: Path, data: Path, name: str, epochs: int, *extra: str) -> str:
    args = ["train.py", *TINY, "--data_root", str(data), "--experiment_name", name, "--num_epochs", str(epochs), *extra]
    proc = run_py(args, cwd=checkout, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def saved_nda(checkout: Path, name: str) -> dict:
    # the run's own file: its config holds nn.ReLU objects (weights_only=False)
    state = torch.load(checkout / "w" / name / "state_dict.pth", weights_only=False)
    return {"itr": state["itr"], "epoch": state["epoch"],
            "nda_steps": (state.get("nda_plugins") or {}).get("session", {}).get("nda_plugins.session", {}).get("num_advances")}


def test_biggan_series_train_resume_score_revert(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    for mod in ("scipy", "h5py", "tqdm", "numpy", "PIL"):
        pytest.importorskip(mod)
    src = upstream_checkout("NDA_UPSTREAM_BIGGAN")
    series = _patching.get_series("biggan")
    checkout = copy_checkout(src, tmp_path / "BigGAN-PyTorch", series.commit)
    before = {rel: _patching.sha256(checkout / rel) for rel in series.files}
    assert before == {rel: h["pristine"] for rel, h in series.files.items()}

    # a dirty tree is refused, naming the file, and left as it was
    utils_py = checkout / "utils.py"
    pristine = utils_py.read_bytes()
    utils_py.write_bytes(pristine + b"# local change\n")
    with pytest.raises(_patching.PatchError, match="utils.py"):
        _patching.apply("biggan", checkout)
    assert utils_py.read_bytes() == pristine + b"# local change\n"
    utils_py.write_bytes(pristine)
    assert _patching.status(checkout)["upstream"] == "biggan"

    assert "applied" in _patching.apply("biggan", checkout)
    assert _patching.status(checkout)["state"] == "applied"
    assert "already applied" in _patching.apply("biggan", checkout)
    data = image_folder(tmp_path / "data" / "ImageNet").parent  # upstream appends /ImageNet for I32
    for sub in ("w", "s", "l"):
        (checkout / sub).mkdir()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    # Unconditional, weighted: 4 iterations and a save. Upstream resumes at the start of the epoch
    # it saved in (epoch 0 here), so the second run trains 8 iterations: itr 12, NDA step 12.
    nda = ["--nda", "jigsaw", "--nda_weight", "0.75", "--nda_mode", "weighted", "--unconditional"]
    out = train(checkout, data, "uncond", 1, *nda)
    assert re.search(r"itr: 4, .*NDA_w : \+0\.750", out), out[-2000:]
    assert saved_nda(checkout, "uncond") == {"itr": 4, "epoch": 0, "nda_steps": 4}
    out = train(checkout, data, "uncond", 2, *nda, "--resume")
    assert "Restored NDA state: step 4" in out and re.search(r"itr: 12, .*NDA_w : \+0\.750", out)
    assert saved_nda(checkout, "uncond") == {"itr": 12, "epoch": 1, "nda_steps": 12}

    # Conditional: a checkpoint written without NDA still loads (NDA starts at step 0) and the
    # replace estimator trains on; then resume with its NDA state.
    out = train(checkout, data, "cond", 1)
    assert "NDA_w" not in out and saved_nda(checkout, "cond")["nda_steps"] is None
    rep = ["--nda", "jigsaw", "--nda_mode", "replace"]
    out = train(checkout, data, "cond", 2, *rep, "--resume")
    assert "Restored NDA state" not in out and re.search(r"itr: 12, .*NDA_w : \+0\.750", out), out[-2000:]
    assert saved_nda(checkout, "cond") == {"itr": 12, "epoch": 1, "nda_steps": 8}
    out = train(checkout, data, "cond", 3, *rep, "--resume")
    assert "Restored NDA state: step 8" in out
    assert saved_nda(checkout, "cond") == {"itr": 20, "epoch": 2, "nda_steps": 16}

    # nda anomaly-score on the conditional checkpoint (class 0 images vs a dark OOD folder).
    ood = image_folder(tmp_path / "ood", classes=1, dark=True)
    report = tmp_path / "report"
    proc = run_py(["-c", "from nda_plugins.cli import main; main()", "anomaly-score", "--biggan", str(checkout / "w" / "cond"),
                   "--upstream", str(checkout), "--in", str(data / "ImageNet" / "c0"), "--ood", str(ood),
                   "--label", "0", "--out", str(report)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((report / "anomaly.json").read_text())
    assert result["in_distribution"]["n"] == 16 and 0.0 <= result["ood"][0]["auroc"] <= 1.0
    print(proc.stdout)

    assert_reverted("biggan", checkout, before)
