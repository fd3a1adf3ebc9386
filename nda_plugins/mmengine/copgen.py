"""COP-Gen on mmengine: navigator training, generated-pair datasets and a pair contrastive model.

Registered in :mod:`nda_plugins.registry` (configs say ``type='nda_plugins.X'``):

- ``COPGenNavigator`` (model): the minimax of :class:`nda_plugins.copgen.COPGen` with two
  optimizers (``optim_wrapper`` keys ``estimator`` and ``navigator``, built by
  ``nda_plugins.SubmoduleOptimWrapperConstructor``); logs ``loss_mi``, ``loss_navigator`` and the
  mean/std of ``||z' - z||``.
- ``LatentDataset`` (dataset): ``z ~ N(0, I)``, one fixed draw per index (so resume is exact).
- ``PairDataset`` (dataset): (anchor, positive) pairs from a folder written by
  :func:`nda_plugins.copgen.generate_pairs`; ``positives='augment'`` pairs each anchor with
  itself instead (plain augmentation positives, the baseline).
- ``PairContrastive`` (model): SimCLR-style training on pairs, both views augmented on the
  device; NDA negatives of each anchor as extra InfoNCE negatives through
  :mod:`nda_plugins.contrastive` when ``nda`` is set.

Augmentation randomness is drawn from a generator seeded by ``(seed, iteration)``, the
iteration being a buffer of the model, so a resumed run replays exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from mmengine.model import BaseModel
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict
from torch import nn

from .. import copgen as _copgen
from .. import transforms as _transforms
from ..registry import DATASETS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS

__all__ = [
    "COPGenNavigator",
    "LatentDataset",
    "PairContrastive",
    "PairDataset",
    "SubmoduleOptimWrapperConstructor",
    "probe",
]


def _seeded(seed: int, iteration: torch.Tensor, device: torch.device) -> torch.Generator:
    # One generator per step from (seed, step): no generator state to checkpoint.
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + int(iteration))


def _stack(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, torch.Tensor) for t in x):
        return torch.stack(list(x))
    raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(x).__name__}")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SubmoduleOptimWrapperConstructor:
    """One optimizer per named submodule: ``optim_wrapper=dict(constructor=
    'nda_plugins.SubmoduleOptimWrapperConstructor', navigator=dict(optimizer=...),
    estimator=dict(optimizer=...))`` gives an ``OptimWrapperDict`` whose key ``k`` optimizes
    ``model.k`` (each built by mmengine's default constructor)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if not isinstance(optim_wrapper_cfg, dict) or not optim_wrapper_cfg:
            raise ValueError(f"optim_wrapper must map submodule names to optimizer configs, got {optim_wrapper_cfg!r}")
        for key, cfg in optim_wrapper_cfg.items():
            if not isinstance(cfg, dict):
                raise ValueError(f"optim_wrapper.{key} must be a dict with an optimizer, got {cfg!r}")
        self.cfgs = {k: dict(v) for k, v in optim_wrapper_cfg.items()}
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        model = getattr(model, "module", model)
        wrappers = {}
        for key, cfg in self.cfgs.items():
            sub = getattr(model, key, None)
            if not isinstance(sub, nn.Module):
                raise ValueError(f"optim_wrapper key {key!r}: {type(model).__name__} has no submodule {key!r}")
            cfg.setdefault("type", "OptimWrapper")
            wrappers[key] = DefaultOptimWrapperConstructor(cfg, self.paramwise_cfg)(sub)
        return OptimWrapperDict(**wrappers)


@DATASETS.register_module()
class LatentDataset(torch.utils.data.Dataset):
    """``num_samples`` latents ``z ~ N(0, I_d)``; item ``i`` is always the same draw.

    Items are ``{"inputs": (latent_dim,) float32}``.
    """

    def __init__(self, num_samples: int = 100_000, latent_dim: int = 32, seed: int = 0) -> None:
        self.num_samples = _copgen._check_int("num_samples", num_samples, 1)
        self.latent_dim = _copgen._check_int("latent_dim", latent_dim, 1)
        self.seed = _copgen._check_int("seed", seed, 0)
        self.metainfo: dict = {}

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        return {"inputs": torch.randn(self.latent_dim, generator=gen)}


@DATASETS.register_module()
class PairDataset(torch.utils.data.Dataset):
    """Pairs from a :func:`nda_plugins.copgen.generate_pairs` folder.

    Args:
        data_root: the folder.
        positives: ``"generated"`` (``G(z')`` is the positive of ``G(z)``) or ``"augment"``
            (the anchor is its own positive: the two views differ only by augmentation).

    Items are ``{"anchor": (3, H, W), "positive": (3, H, W)}`` in ``[-1, 1]``.
    """

    def __init__(self, data_root: str, positives: str = "generated") -> None:
        if positives not in ("generated", "augment"):
            raise ValueError(f"positives must be 'generated' or 'augment', got {positives!r}")
        self.positives = positives
        self.anchors, generated = _copgen.read_pairs(data_root)
        self.positive_images = generated if positives == "generated" else self.anchors
        self.metainfo: dict = {}

    def __len__(self) -> int:
        return self.anchors.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"anchor": self.anchors[index], "positive": self.positive_images[index]}


@MODELS.register_module()
class COPGenNavigator(BaseModel):
    """COP-Gen's navigator/estimator minimax as an mmengine model.

    Args:
        generator: see :func:`nda_plugins.copgen.load_generator` (``None``: a small generator
            trained on the fly; ``generator_kwargs`` go to it or to a factory).
        generator_checkpoint: state dict loaded into the generator.
        generator_kwargs: keyword arguments of the default generator or factory.
        latent_dim: default: the generator's ``z_dim`` / ``latent_dim``.
        estimator: keyword arguments of :class:`nda_plugins.copgen.Estimator`, or a module.
        temperature, radius, consistency_weight, augment, init_scale: see
            :class:`nda_plugins.copgen.COPGen`.
        seed: seeds the augmentations (and the modules' initialisation).
    """

    def __init__(
        self,
        generator: Any = None,
        generator_checkpoint: str | None = None,
        generator_kwargs: dict | None = None,
        latent_dim: int | None = None,
        estimator: dict | nn.Module | None = None,
        temperature: float = 0.1,
        radius: float = 0.5,
        consistency_weight: float = 10.0,
        augment: bool = True,
        init_scale: float = 1e-2,
        seed: int = 0,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.seed = _copgen._check_int("seed", seed, 0)
        G = _copgen.load_generator(generator, checkpoint=generator_checkpoint, factory_kwargs=generator_kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            est = _copgen.Estimator(**(estimator or {})) if not isinstance(estimator, nn.Module) else estimator
            self.cop = _copgen.COPGen(
                G, latent_dim, estimator=est, temperature=temperature, radius=radius,
                consistency_weight=consistency_weight, augment=augment, init_scale=init_scale,
            )
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    # Named submodules the optimizers address.
    @property
    def navigator(self) -> _copgen.Navigator:
        return self.cop.navigator

    @property
    def estimator(self) -> nn.Module:
        return self.cop.estimator

    @property
    def generator(self) -> nn.Module:
        return self.cop.generator

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor"):
        z = _stack(inputs, "inputs")
        if mode == "tensor":
            return self.cop.navigator(z)
        if mode == "loss":
            out = self.cop.losses(z, generator=_seeded(self.seed, self.iteration, z.device))
            return {"loss_mi": out["info_nce"]}
        raise ValueError(f"mode must be 'tensor' or 'loss', got {mode!r}")

    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> dict[str, torch.Tensor]:
        if not isinstance(optim_wrapper, OptimWrapperDict) or not {"estimator", "navigator"} <= set(optim_wrapper.keys()):
            raise ValueError(
                "COPGenNavigator needs optim_wrapper=dict(constructor='nda_plugins.SubmoduleOptimWrapperConstructor', "
                "estimator=dict(optimizer=...), navigator=dict(optimizer=...))"
            )
        data = self.data_preprocessor(data, True)
        z = _stack(data["inputs"], "inputs")
        gen = _seeded(self.seed, self.iteration, z.device)
        out = self.cop.minimax_step(
            z, optim_wrapper["estimator"].update_params, optim_wrapper["navigator"].update_params, generator=gen
        )
        self.iteration += 1
        return out

    def val_step(self, data):  # pragma: no cover - no validation loop
        return self.forward(**self.data_preprocessor(data, False), mode="tensor")

    test_step = val_step


@MODELS.register_module()
class PairContrastive(BaseModel):
    """Contrastive learning on (anchor, positive) pairs, both views augmented on the device.

    Loss: :func:`nda_plugins.copgen.pair_info_nce` of the projections; with ``nda`` a transform
    spec (e.g. ``"jigsaw"``), one NDA view of each anchor is an extra negative of its rows
    (NDA paper eq. 8, via :mod:`nda_plugins.contrastive`), down-weighted by ``nda_weight``.

    Args:
        encoder: keyword arguments of :class:`nda_plugins.copgen.Estimator`, or a module with
            ``features(x)`` and ``forward(x)``.
        temperature: InfoNCE temperature.
        augment: augment both views (:func:`nda_plugins.copgen.augment`).
        nda: a transform spec or ``None``.
        nda_weight: see :func:`nda_plugins.contrastive.nda_info_nce`.
        seed: seeds initialisation, augmentations and negatives.
    """

    def __init__(
        self,
        encoder: dict | nn.Module | None = None,
        temperature: float = 0.1,
        augment: bool = True,
        nda: str | None = None,
        nda_weight: float | None = None,
        seed: int = 0,
        data_preprocessor: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.seed = _copgen._check_int("seed", seed, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.encoder = encoder if isinstance(encoder, nn.Module) else _copgen.Estimator(**(encoder or {}))
        self.temperature = _copgen._check_positive("temperature", temperature)
        if not isinstance(augment, bool):
            raise TypeError(f"augment must be a bool, got {type(augment).__name__}")
        self.augment = augment
        self.nda_spec = nda
        self.nda = None if nda is None else _transforms.build(nda)
        self.nda_weight = nda_weight
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def forward(self, anchor: Any, positive: Any = None, data_samples: Any = None, mode: str = "tensor"):
        anchor = _stack(anchor, "anchor")
        if mode == "tensor":
            return self.encoder.features(anchor)
        if mode != "loss":
            raise ValueError(f"mode must be 'tensor' or 'loss', got {mode!r}")
        positive = _stack(positive, "positive")
        gen = _seeded(self.seed, self.iteration, anchor.device)
        views = torch.cat([anchor, positive])
        if self.augment:
            views = _copgen.augment(views, generator=gen)
        fa, fp = self.encoder(views).chunk(2)
        nda_keys = None
        if self.nda is not None:
            neg = self.nda(anchor, generator=gen)
            if self.augment:
                neg = _copgen.augment(neg, generator=gen)
            nda_keys = self.encoder(neg).unsqueeze(1)
        self.iteration += 1
        loss = _copgen.pair_info_nce(fa, fp, temperature=self.temperature, nda_keys=nda_keys, nda_weight=self.nda_weight)
        return {"loss": loss}


@torch.no_grad()
def probe(
    encoder: nn.Module,
    *,
    size: int = 32,
    n_train_per_class: int = 200,
    n_test_per_class: int = 200,
    seed: int = 1000,
    ridge: float = 1e-2,
) -> dict[str, float]:
    """Linear probe on frozen features: top-1 on procedural discs / squares / rings.

    A ridge-regression classifier (closed form, on standardised ``encoder.features``) is fitted
    on ``3 * n_train_per_class`` images and scored on ``3 * n_test_per_class`` others.

    Returns:
        ``{"train_top1": ..., "test_top1": ...}`` in ``[0, 1]``.
    """
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    xtr, ytr = _copgen.shape_dataset(n_train_per_class, size=size, seed=seed)
    xte, yte = _copgen.shape_dataset(n_test_per_class, size=size, seed=seed + 1)
    ftr = torch.cat([encoder.features(x.to(device)) for x in xtr.split(256)]).double().cpu()
    fte = torch.cat([encoder.features(x.to(device)) for x in xte.split(256)]).double().cpu()
    encoder.train(was_training)
    mean, std = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mean) / std, (fte - mean) / std
    ftr = torch.cat([ftr, torch.ones(len(ftr), 1, dtype=ftr.dtype)], 1)
    fte = torch.cat([fte, torch.ones(len(fte), 1, dtype=fte.dtype)], 1)
    targets = torch.nn.functional.one_hot(ytr, len(_copgen.CLASSES)).double()
    eye = torch.eye(ftr.shape[1], dtype=ftr.dtype)
    weights = torch.linalg.solve(ftr.T @ ftr + ridge * len(ftr) * eye, ftr.T @ targets)
    return {
        "train_top1": float(((ftr @ weights).argmax(1) == ytr).double().mean()),
        "test_top1": float(((fte @ weights).argmax(1) == yte).double().mean()),
    }


def write_results(out_dir: str | Path, results: dict[str, Any]) -> str:
    """Write ``results.json`` and ``table.txt`` for a probe comparison; returns the table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"{'positives':<12} {'iters':>6} {'final loss':>11} {'probe top-1':>12}"]
    for name, row in results["runs"].items():
        loss = "-" if row.get("final_loss") is None else f"{row['final_loss']:.4f}"
        lines.append(f"{name:<12} {row['iters']:>6} {loss:>11} {row['probe']['test_top1']:>12.3f}")
    table = "\n".join(lines) + "\n"
    (out / "table.txt").write_text(table)
    return table
