"""Step case for benchmarks/bench_step.py: one MoCo-v2 training step on lightly, plain and with NDA keys.

The step is :meth:`nda_plugins.adapters.lightly_moco.training.MoCoTrainer.train_step` itself
(two augmented views, momentum update, query encoder forward + backward, momentum-encoder keys,
:class:`~nda_plugins.adapters.lightly_moco.loss.NDANTXentLoss` against the queue, SGD step) at
the training script's default sizes: 32x32 images, batch 128, width 32, queue 1024, one NDA
view per query (``jigsaw``, w = 0.75).

MoCo has no discriminator, so the ``fake_d_pass`` slot holds what NDA adds to a step: one
no-grad pass of the momentum (key) encoder over the NDA views of the batch (``B`` images, here
jigsaw views of the query view), the same call the NDA step makes for its NDA keys.
"""

from __future__ import annotations

import importlib.util

NAME = "lightly_moco"
VARIANTS = ("weighted",)
BATCH, SIZE, PER_CLASS = 128, 32, 16


def skip_reason() -> str | None:
    for module, why in (("lightly", "lightly"), ("torchvision", "torchvision (lightly needs it)")):
        if importlib.util.find_spec(module) is None:
            return f"{why} is not installed (pip install 'nda-plugins[lightly]')"
    return None


def build(variant: str | None, device, seed: int = 0) -> dict:
    import torch

    from nda_plugins.adapters.lightly_moco.augment import moco_v2_views
    from nda_plugins.adapters.lightly_moco.data import embedded
    from nda_plugins.adapters.lightly_moco.training import MoCoTrainer, TrainConfig

    if variant not in (None, *VARIANTS):
        raise ValueError(f"variant must be None or one of {VARIANTS}, got {variant!r}")
    data = embedded(PER_CLASS, 1, size=SIZE, seed=seed)
    # A long schedule: the bench repeats the step many times; lr / momentum stay near step 0's.
    config = TrainConfig(steps=10_000, batch_size=BATCH, seed=seed, nda=None if variant is None else "jigsaw")
    trainer = MoCoTrainer(data, config, device=device)

    def step():
        trainer.train_step()

    out = {"step": step}
    if variant is None:
        from nda_plugins import transforms

        g = torch.Generator(device=trainer.device).manual_seed(seed)
        x_q = moco_v2_views(trainer.batch(0), generator=g)
        jigsaw = transforms.build("jigsaw")

        def fake_d_pass():
            trainer.model.forward_momentum(jigsaw(x_q, generator=g))

        out["fake_d_pass"] = fake_d_pass
    return out
