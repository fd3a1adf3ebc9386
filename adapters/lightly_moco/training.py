"""The MoCo-v2 training loop with NDA keys, its checkpoints and its evaluation.

One step (MoCo-v2 as in lightly's examples): move the momentum encoder with lightly's
``update_momentum`` at lightly's ``cosine_schedule`` momentum; two augmented views of the batch;
queries from the query encoder; keys of the positive view (and, with NDA, of ``M`` NDA views of
the query view, one no-grad pass per view) from the momentum encoder; :class:`NDANTXentLoss`
against the queue, which then takes the positive keys.

Everything a step draws is a function of ``(seed, step, rank)`` or lives in checkpointed state
(model, optimizer, queue, NDA sessions), so resuming from a checkpoint continues exactly where
the uninterrupted run would be. Under ``torch.distributed`` the query encoder is wrapped in
``DistributedDataParallel`` and the queue gathers every rank's keys (lightly's
``gather_distributed``), so every rank holds the same queue.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from lightly.utils.scheduler import cosine_schedule

from .augment import moco_v2_views
from .data import ImageData, batch_indices
from .loss import NDANTXentLoss
from .model import MoCoV2
from .nda import NDAViews, _mix64
from .probe import extract_features, jigsaw_distances, knn_top1, linear_probe_top1

__all__ = ["CHECKPOINT_VERSION", "MoCoTrainer", "TrainConfig"]

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one run (saved in checkpoints; a resume must use the same ones).

    Attributes:
        steps: training steps.
        batch_size: global batch size (split over processes).
        queue: MoCo queue length ``K``.
        temperature: InfoNCE temperature (MoCo-v2: 0.2).
        lr: SGD learning rate (cosine-decayed to 0); momentum 0.9. 0.01, not the 0.06 of the
            CIFAR ResNet recipes: with 0.06 this small GroupNorm backbone collapsed (features with
            a per-dimension std of 0.003 after 120 steps, loss rising to log(K + 1)).
        weight_decay: SGD weight decay.
        key_momentum: momentum-encoder EMA at step 0, cosine-increased to 1 (lightly's
            ``cosine_schedule``).
        width, hidden_dim, out_dim: model sizes (see :class:`MoCoV2`).
        seed: model init, data order, augmentations, NDA generators.
        nda: transform spec(s) joined by ``+`` (one drawn per batch), or ``None`` for plain MoCo.
        nda_weight: ``w`` in ``[0, 1)`` on the NDA keys' denominator terms.
        nda_schedule: a :mod:`nda_plugins.schedules` spec shaping ``w`` over steps.
        nda_views: ``M`` NDA views per query.
    """

    steps: int = 400
    batch_size: int = 128
    queue: int = 1024
    temperature: float = 0.2
    lr: float = 0.01
    weight_decay: float = 5e-4
    key_momentum: float = 0.99
    width: int = 32
    hidden_dim: int = 256
    out_dim: int = 64
    seed: int = 0
    nda: str | None = None
    nda_weight: float = 0.75
    nda_schedule: str = "constant"
    nda_views: int = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "queue", "width", "hidden_dim", "out_dim", "nda_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        for name, low, high in (("temperature", 0.0, math.inf), ("lr", 0.0, math.inf)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low < value < high):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.key_momentum, (int, float)) and 0.0 <= self.key_momentum <= 1.0):
            raise ValueError(f"key_momentum must be in [0, 1], got {self.key_momentum!r}")
        if self.nda is not None and not isinstance(self.nda, str):
            raise TypeError(f"nda must be a transform spec string or None, got {type(self.nda).__name__}")


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class MoCoTrainer:
    """MoCo-v2 (optionally with NDA keys) on in-memory images.

    Args:
        data: training / probe images (moved to ``device``).
        config: the run's settings.
        device: where to train.

    Under ``torch.distributed`` (initialised by the caller), every rank builds one trainer.
    """

    def __init__(self, data: ImageData, config: TrainConfig, *, device: torch.device | str = "cpu") -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.device = torch.device(device)
        self.rank, self.world_size = _world()
        if config.batch_size % self.world_size:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be divisible by the number of processes ({self.world_size})"
            )
        if config.batch_size > len(data.train_x):
            raise ValueError(f"batch_size ({config.batch_size}) must be at most the number of training images ({len(data.train_x)})")
        self.data = data.to(self.device)
        torch.manual_seed(config.seed)  # model init and the queue's random start: same on every rank
        self.model = MoCoV2(config.width, config.hidden_dim, config.out_dim).to(self.device)
        self.criterion = NDANTXentLoss(
            config.temperature, (config.queue, config.out_dim), gather_distributed=self.world_size > 1
        ).to(self.device)
        self.query_encoder: Callable[[torch.Tensor], torch.Tensor] = self.model
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.query_encoder = DistributedDataParallel(self.model, device_ids=ids)
        self.nda = None
        if config.nda is not None:
            self.nda = NDAViews(
                config.nda, weight=config.nda_weight, schedule=config.nda_schedule, views=config.nda_views,
                seed=config.seed, rank=self.rank,
            )
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
        self.step = 0

    # ------------------------------------------------------------------------------------
    # Training
    # ------------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        """Cosine-decayed learning rate at ``step``."""
        return self.config.lr * 0.5 * (1 + math.cos(math.pi * min(step, self.config.steps) / self.config.steps))

    def momentum_at(self, step: int) -> float:
        """Momentum-encoder EMA factor at ``step`` (lightly's cosine schedule up to 1)."""
        return float(cosine_schedule(min(step, self.config.steps), self.config.steps, self.config.key_momentum, 1.0))

    def batch(self, step: int) -> torch.Tensor:
        """This rank's images of ``step``: ``(B / world_size, 3, S, S)``."""
        idx = batch_indices(step, n=len(self.data.train_x), batch_size=self.config.batch_size,
                            seed=self.config.seed, rank=self.rank, world_size=self.world_size)
        return self.data.train_x[idx.to(self.device)]

    def train_step(self) -> dict[str, Any]:
        """One MoCo-v2 step; returns ``{"loss": tensor, "nda_weight": float | None}`` (no sync)."""
        step = self.step
        x = self.batch(step)
        g = torch.Generator(device=self.device).manual_seed(_mix64(_mix64(self.config.seed) ^ step) ^ self.rank)
        x_q = moco_v2_views(x, generator=g)
        x_k = moco_v2_views(x, generator=g)
        self.model.update_momentum(self.momentum_at(step))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step)

        query = self.query_encoder(x_q)
        nda_keys, w = None, None
        if self.nda is None:
            key = self.model.forward_momentum(x_k)
        else:
            views = self.nda.views(x_q, step)                                   # (M, B, 3, S, S)
            key = self.model.forward_momentum(x_k)
            # One key-encoder pass per view, at the batch size of the positive keys rather than
            # one (M + 1) B batch: on CPU a 2B batch measured 2.7x the time of a B batch (its
            # activations leave the cache), two B batches 2x. Per-sample GroupNorm makes the
            # keys the same either way.
            nda_keys = torch.stack([self.model.forward_momentum(v) for v in views], dim=1)  # (B, M, D)
            w = self.nda.weight(step)
        loss = self.criterion(query, key, nda_keys=nda_keys, nda_weight=w)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.nda is not None:
            self.nda.advance()
        self.step += 1
        return {"loss": loss.detach(), "nda_weight": w}

    def train(self, *, until: int | None = None, checkpoint: str | Path | None = None, checkpoint_every: int = 0,
              progress: bool = True, desc: str = "moco") -> list[float]:
        """Train up to step ``until`` (default ``config.steps``).

        Args:
            until: the step to stop at.
            checkpoint: where to save (every ``checkpoint_every`` steps if > 0, and at the end).
            checkpoint_every: interval in steps (0: only at the end).
            progress: show a progress bar on rank 0.
            desc: the bar's label.

        Returns:
            The loss of every step run here (Python floats, read once at the end).
        """
        until = self.config.steps if until is None else until
        bar = None
        if progress and self.rank == 0:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=until, initial=self.step, desc=desc, dynamic_ncols=True)
            except ImportError:  # pragma: no cover - tqdm comes with lightly
                bar = None
        losses = []
        while self.step < until:
            out = self.train_step()
            losses.append(out["loss"])
            if bar is not None:
                bar.update(1)
                if self.step % 10 == 0 or self.step == until:
                    post = {"loss": f"{float(out['loss']):.3f}"}
                    if out["nda_weight"] is not None:
                        post["w"] = f"{out['nda_weight']:.2f}"
                    bar.set_postfix(post)
            if checkpoint is not None and checkpoint_every > 0 and self.step % checkpoint_every == 0:
                self.save(checkpoint)
        if bar is not None:
            bar.close()
        if checkpoint is not None:
            self.save(checkpoint)
        return [float(v) for v in losses]

    # ------------------------------------------------------------------------------------
    # Checkpoints
    # ------------------------------------------------------------------------------------

    def _local_state(self) -> dict[str, Any]:
        def cpu(obj):
            if isinstance(obj, torch.Tensor):
                return obj.detach().cpu().clone()
            if isinstance(obj, dict):
                return {k: cpu(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [cpu(v) for v in obj]
            return obj

        return cpu({"criterion": self.criterion.state_dict(), "nda": None if self.nda is None else self.nda.state_dict()})

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model (both encoders), optimizer, step, config and, per
        rank, the queue and the NDA sessions' state. A collective under ``torch.distributed``:
        every rank must call it."""
        local = self._local_state()
        ranks = [local]
        if self.world_size > 1:
            ranks = [None] * self.world_size
            dist.all_gather_object(ranks, local)
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "config": dataclasses.asdict(self.config),
            "world_size": self.world_size,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ranks": ranks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (checked first: a mismatch changes nothing).

        Raises:
            ValueError: the checkpoint is from another version, configuration or world size.
        """
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"not a lightly_moco checkpoint of version {CHECKPOINT_VERSION}")
        saved = state.get("config")
        mine = dataclasses.asdict(self.config)
        if saved != mine:
            diff = sorted(k for k in set(mine) | set(saved or {}) if (saved or {}).get(k) != mine.get(k))
            details = ", ".join(f"--{k.replace('_', '-')}: checkpoint {(saved or {}).get(k)!r}, now {mine.get(k)!r}" for k in diff)
            raise ValueError(f"the checkpoint was trained with other settings; resume with the same ones ({details})")
        if state.get("world_size") != self.world_size:
            raise ValueError(
                f"the checkpoint was written by {state.get('world_size')} processes, this run has {self.world_size}; "
                "resume with the same --nproc_per_node"
            )
        own = state["ranks"][self.rank]
        # Validate the parts that can be refused before anything changes.
        probe = NDANTXentLoss(self.config.temperature, (self.config.queue, self.config.out_dim))
        probe.load_state_dict(own["criterion"])
        if self.nda is not None:
            NDAViews(self.config.nda, weight=self.config.nda_weight, schedule=self.config.nda_schedule,
                     views=self.config.nda_views, seed=self.config.seed, rank=self.rank).load_state_dict(own["nda"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.criterion.load_state_dict(own["criterion"])
        if self.nda is not None:
            self.nda.load_state_dict(own["nda"])
        self.step = int(state["step"])

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (rank 0 writes; every rank must call)."""
        state = self.state_dict()
        if self.rank == 0:
            path = Path(path)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)
        if self.world_size > 1:
            dist.barrier()

    def load(self, path: str | Path) -> None:
        """Resume from a checkpoint written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"--resume: expected a checkpoint file, got {str(path)!r}")
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))

    # ------------------------------------------------------------------------------------
    # Evaluation
    # ------------------------------------------------------------------------------------

    def evaluate(self, *, knn_k: int = 20, probe_steps: int = 300, seed: int = 0) -> dict[str, Any]:
        """kNN and linear-probe top-1 on the backbone features, and the Fig. 9 jigsaw distances.

        The jigsaw distances are measured on the backbone features (what the probes use) and on
        the projection-head embedding (where the contrastive loss, and so NDA, acts).

        Returns:
            ``{"knn_top1", "linear_top1", "jigsaw_distance": {"features": stats, "embedding":
            stats}, "jigsaw_distances": {"features": [...], "embedding": [...]}}`` with ``stats``
            ``{"mean", "std", "median"}`` over the test images.
        """
        backbone = self.model.backbone
        embed = torch.nn.Sequential(backbone, self.model.projection_head)
        d = self.data
        train_f, test_f = extract_features(backbone, d.train_x), extract_features(backbone, d.test_x)
        dists = {name: jigsaw_distances(enc, d.test_x, seed=seed).cpu()
                 for name, enc in (("features", backbone), ("embedding", embed))}
        return {
            "knn_top1": knn_top1(train_f, d.train_y, test_f, d.test_y, k=knn_k),
            "linear_top1": linear_probe_top1(train_f, d.train_y, test_f, d.test_y, steps=probe_steps),
            "jigsaw_distance": {name: {"mean": float(v.mean()), "std": float(v.std()), "median": float(v.median())}
                                for name, v in dists.items()},
            "jigsaw_distances": {name: [round(float(x), 5) for x in v] for name, v in dists.items()},
        }
