"""Step case: one DPC training step on mmengine's model (Adam), with NDA video negatives or without."""

from __future__ import annotations

import importlib.util

NAME = "mmengine_dpc"
VARIANTS = ("weighted",)


def skip_reason() -> str | None:
    if importlib.util.find_spec("mmengine") is None:
        return "mmengine is not installed (pip install 'nda-plugins[mmengine]')"
    return None


def source() -> str:
    """Which implementation the rows measure (shown in the benchmark table)."""
    return "nda_plugins' DPC model (mmengine)"


def build(variant: str | None, device, seed: int = 0) -> dict:
    import torch

    from nda_plugins.mmengine.dpc import DPC
    from nda_plugins.mmengine.video_data import MovingShapesVideo

    if variant not in (None, *VARIANTS):
        raise ValueError(f"variant must be None or one of {VARIANTS}, got {variant!r}")
    torch.manual_seed(seed)
    nda = None if variant is None else dict(transform="jigsaw:grid=2", weight=0.5, seed=seed)
    model = DPC(num_blocks=4, pred_steps=2, dim=32, width=16, nda=nda).to(device)
    data = MovingShapesVideo(num_clips=16, frames=8, size=32, seed=seed)
    clips = torch.stack([data[i]["inputs"] for i in range(len(data))]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        model(clips, mode="loss")["loss_dpc"].backward()
        opt.step()

    out = {"step": step, "model": model}
    if variant is None:
        # DPC has no discriminator: the "fake side" is the extra encoder pass over the NDA
        # view's future blocks; this closure runs just that forward + backward.
        neg_blocks = model._blocks(clips)[:, model.num_blocks - model.pred_steps:]

        def fake_d_pass():
            model.encode(neg_blocks).sum().backward()

        out["fake_d_pass"] = fake_d_pass
    return out


def measure(repeats: int = 15, inner: int = 3, seed: int = 0, device: str = "cpu") -> dict:
    """Median over ``repeats`` rounds of (time of ``inner`` NDA steps) / (time of ``inner`` plain steps).

    The two steps are interleaved in every round (order alternating), so load changes on a shared
    machine hit both alike. Also reports the extra encoder pass alone (``fake_d_pass``) over the
    plain step.
    """
    import statistics
    import time

    import torch

    for name, value in (("repeats", repeats), ("inner", inner)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    dev = torch.device(device)
    plain, nda = build(None, dev, seed), build("weighted", dev, seed)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        return time.perf_counter() - start

    for fn in (plain["step"], nda["step"], plain["fake_d_pass"]):  # warm-up
        timed(fn)
    ratios, extra, plain_s = [], [], []
    for r in range(repeats):
        order = (plain["step"], nda["step"]) if r % 2 == 0 else (nda["step"], plain["step"])
        t = {id(fn): timed(fn) for fn in order}
        t_plain, t_nda = t[id(plain["step"])], t[id(nda["step"])]
        ratios.append(t_nda / t_plain)
        extra.append(timed(plain["fake_d_pass"]) / t_plain)
        plain_s.append(t_plain / inner)
    return {
        "case": NAME, "device": str(dev), "repeats": repeats, "inner": inner,
        "threads": torch.get_num_threads(),
        "median_ratio_nda_over_plain": statistics.median(ratios),
        "min_ratio": min(ratios), "max_ratio": max(ratios),
        "median_extra_encoder_pass_over_plain": statistics.median(extra),
        "median_plain_step_s": statistics.median(plain_s),
    }


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="DPC step with NDA over the same step without it (one run)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(measure(args.repeats, args.inner, device=args.device), indent=2))
