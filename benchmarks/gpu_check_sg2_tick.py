"""Train a tiny StyleGAN2-ADA for a few ticks and say whether the fused CUDA ops did the work.

Run by ``benchmarks/gpu_check.sh`` with the working directory set to a *patched*
stylegan2-ada-pytorch checkout::

    python benchmarks/gpu_check_sg2_tick.py OUTDIR [--nda] [--dry-run]

It calls upstream's ``bias_act._init()`` and ``upfirdn2d._init()`` (the calls training makes;
they fall back to the reference ops with only a warning when the build fails), counts the calls
that reach the fused paths (``_bias_act_cuda`` / ``_upfirdn2d_cuda``) while
``tests/integration/sg2_driver.py`` trains 3 ticks, and prints one JSON line::

    {"nda": bool, "cuda": bool, "bias_act_init": bool, "upfirdn2d_init": bool,
     "bias_act_plugin": bool, "upfirdn2d_plugin": bool, "fused_calls": {...},
     "loss_class": str, "ticks": int, "nda_in_ticks": bool, "fused_ok": bool, "ok": bool}

``fused_ok``: CUDA present, both ops built and loaded, both fused paths called during training.
``ok``: ``fused_ok``, the loss class is NDA's exactly when ``--nda`` was given (and every tick
line shows ``nda_w``), and 3 ticks were logged. ``--dry-run`` (on a CPU only) drops ``fused_ok``
from ``ok``, to test the plumbing where no GPU is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NDA_LOSS = "nda_plugins.adapters.stylegan2_ada.loss.NDAStyleGAN2Loss"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count_calls(module, attr: str, counts: dict) -> None:
    original = getattr(module, attr)
    counts[attr] = 0

    def counted(*args, **kwargs):
        counts[attr] += 1
        return original(*args, **kwargs)

    setattr(module, attr, counted)  # looked up as a module global at each call


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: gpu_check_sg2_tick.py OUTDIR [--nda] [--dry-run]", file=sys.stderr)
        return 2
    outdir, nda, dry_run = Path(argv[0]), "--nda" in argv[1:], "--dry-run" in argv[1:]
    sys.path.insert(0, os.getcwd())
    import torch
    from torch_utils.ops import bias_act, upfirdn2d  # upstream

    result = {"nda": nda, "cuda": torch.cuda.is_available()}
    result["bias_act_init"] = bool(bias_act._init())
    result["upfirdn2d_init"] = bool(upfirdn2d._init())
    result["bias_act_plugin"] = bias_act._plugin is not None
    result["upfirdn2d_plugin"] = upfirdn2d._plugin is not None
    counts: dict[str, int] = {}
    _count_calls(bias_act, "_bias_act_cuda", counts)
    _count_calls(upfirdn2d, "_upfirdn2d_cuda", counts)

    integration = REPO / "tests" / "integration"
    helpers = _load(integration / "conftest.py", "nda_gpu_check_helpers")
    driver = _load(integration / "sg2_driver.py", "nda_gpu_check_driver")
    outdir.mkdir(parents=True, exist_ok=True)
    data = helpers.tiny_dataset(outdir / "tiny16.zip", labels=False)
    options = {"steps": 12, "steps_per_tick": 4}
    if nda:
        options["nda"] = "jigsaw"
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            driver.main([str(data), str(outdir / ("nda" if nda else "plain")), json.dumps(options)])
    finally:
        text = log.getvalue()
        (outdir / f"train_{'nda' if nda else 'plain'}.log").write_text(text)
    run_dir = next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("RUN_DIR "))
    loss_class = json.loads((Path(run_dir) / "training_options.json").read_text())["loss_kwargs"]["class_name"]
    ticks = [line for line in text.splitlines() if line.startswith("tick ")]
    result.update(fused_calls=counts, loss_class=loss_class, ticks=len(ticks),
                  nda_in_ticks=bool(ticks) and all("nda_w" in t for t in ticks))
    result["fused_ok"] = bool(
        result["cuda"] and result["bias_act_init"] and result["upfirdn2d_init"]
        and result["bias_act_plugin"] and result["upfirdn2d_plugin"] and all(n > 0 for n in counts.values()))
    trained_ok = len(ticks) >= 3 and (loss_class == NDA_LOSS) == nda and result["nda_in_ticks"] == nda
    # --dry-run (gpu_check.sh on a CPU): the fused ops cannot exist there; check the rest only.
    result["ok"] = trained_ok and (result["fused_ok"] or (dry_run and not result["cuda"]))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
