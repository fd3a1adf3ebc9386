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

    out = {"step": step}
    if variant is None:
        # DPC has no discriminator: the "fake side" is the extra encoder pass over the NDA
        # view's future blocks; this closure runs just that forward + backward.
        neg_blocks = model._blocks(clips)[:, model.num_blocks - model.pred_steps:]

        def fake_d_pass():
            model.encode(neg_blocks).sum().backward()

        out["fake_d_pass"] = fake_d_pass
    return out
