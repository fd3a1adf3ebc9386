"""COP-Gen launcher: ``python -m nda_plugins.adapters.mmengine_copgen.launch COMMAND``.

Commands (``--help`` on each):

- ``navigator``: train the navigator against the MI estimator (``navigator_config.py``).
- ``generate``: write (anchor, positive) pairs from a trained navigator to a folder.
- ``contrastive``: one contrastive run on pairs (``contrastive_config.py``).
- ``compare``: generated vs augmentation positives at equal budget, linear probe; writes
  ``results.json`` and ``table.txt``.
- ``all``: the three steps above in ``WORK_DIR/{navigator,pairs,compare}``.

``navigator``, ``contrastive``, ``compare`` and ``all`` take ``--launcher pytorch`` to train on
several processes (``torchrun --nproc_per_node=2 -m nda_plugins.adapters.mmengine_copgen.launch
navigator --launcher pytorch ...``; CPU: gloo, GPU: nccl). Gradients are averaged over the ranks
(:mod:`nda_plugins.mmengine.compat`); files are written by rank 0 only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import click

from nda_plugins._dist import finish_distributed

from . import config_path

MODEL_CFG = "copgen_model.json"
# Scalars of the last navigator iteration kept in navigator_stats.json.
NAVIGATOR_STATS = ("loss_mi", "loss_navigator", "consistency", "step_norm_mean", "step_norm_std")


LAUNCHERS = ("none", "pytorch")


def _runner(name: str, work_dir: Path, options: dict[str, Any], *, resume: bool = False, launcher: str = "none"):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import nda_plugins.mmengine  # noqa: F401  (registers the models and datasets)
    from nda_plugins.mmengine.compat import enable_full_checkpoint_loading, init_cpu_distributed

    enable_full_checkpoint_loading()
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if launcher == "pytorch":
        import torch

        if not init_cpu_distributed("nccl" if torch.cuda.is_available() else "gloo"):
            raise ValueError("--launcher pytorch needs torchrun's environment (RANK, WORLD_SIZE) and >= 2 processes")
    cfg = Config.fromfile(str(config_path(name)))
    cfg.merge_from_dict(options)
    cfg.work_dir = str(work_dir)
    cfg.resume = resume
    cfg.launcher = launcher
    return Runner.from_cfg(cfg)


def _check_replicas(runner) -> float:
    """Largest parameter difference between ranks after training; raises if the replicas diverged."""
    from nda_plugins.mmengine.compat import replica_max_diff

    diff = replica_max_diff(runner.model)
    if diff != 0.0:
        raise RuntimeError(f"the ranks' model replicas differ by up to {diff:.3g} after training (gradients not synchronised)")
    return diff


@contextlib.contextmanager
def _user_errors():
    """Bad settings found deep inside mmengine (a generator spec, a transform) as one-line errors."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from exc


def _check_nda(nda: str | None) -> None:
    if nda is not None:
        from nda_plugins import transforms

        try:
            transforms.build(nda)
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(str(exc), param_hint="--nda") from exc


def _check_new(path: Path, flag: str) -> None:
    if path.exists() and any(path.iterdir()):
        raise click.UsageError(f"{flag} {str(path)!r} is not empty; pick a new folder (nothing is overwritten)")


def train_navigator(work_dir: Path, *, iters: int, batch_size: int, generator: str | None, generator_steps: int,
                    size: int, latent_dim: int, seed: int = 0, resume: bool = False,
                    estimator_lr: float = 3e-5, navigator_lr: float = 1e-5, launcher: str = "none") -> Path:
    """Run the navigator config; returns the last checkpoint's path."""
    from mmengine.dist import barrier, get_world_size, is_main_process

    model: dict[str, Any] = {"seed": seed}
    if generator is None:
        model["generator_kwargs"] = {"steps": generator_steps, "size": size, "z_dim": latent_dim, "seed": seed}
    else:
        model.update(generator=generator, generator_kwargs=None, latent_dim=latent_dim)
    options = {
        "model": model,
        "train_dataloader.batch_size": batch_size,
        "train_dataloader.dataset.latent_dim": latent_dim,
        "train_dataloader.dataset.seed": seed,
        "train_cfg.max_iters": iters,
        "optim_wrapper.estimator.optimizer.lr": estimator_lr,
        "optim_wrapper.navigator.optimizer.lr": navigator_lr,
        "default_hooks.checkpoint.interval": iters,
        "default_hooks.logger.interval": max(1, iters // 5),
    }
    runner = _runner("navigator", work_dir, options, resume=resume, launcher=launcher)
    runner.train()
    replica_diff = _check_replicas(runner)
    if is_main_process():
        (work_dir / MODEL_CFG).write_text(json.dumps(runner.cfg.model.to_dict(), indent=2))
        hub = runner.message_hub
        stats = {key: float(hub.get_scalar(f"train/{key}").current()) for key in NAVIGATOR_STATS}
        stats.update(iters=iters, batch_size=batch_size, world_size=get_world_size(), replica_max_diff=replica_diff)
        (work_dir / "navigator_stats.json").write_text(json.dumps(stats, indent=2))
    barrier()
    return Path((work_dir / "last_checkpoint").read_text().strip())


def load_navigator_model(work_dir: Path):
    """Rebuild the trained ``COPGenNavigator`` of a ``navigator`` work dir (last checkpoint)."""
    import nda_plugins.mmengine  # noqa: F401
    from mmengine.runner import load_checkpoint
    from nda_plugins.mmengine.compat import enable_full_checkpoint_loading
    from nda_plugins.registry import MODELS

    enable_full_checkpoint_loading()
    if not (work_dir / MODEL_CFG).is_file() or not (work_dir / "last_checkpoint").is_file():
        raise click.UsageError(f"--navigator-dir {str(work_dir)!r} holds no finished navigator run")
    cfg = json.loads((work_dir / MODEL_CFG).read_text())
    if cfg.get("generator") is None:  # the checkpoint holds the trained weights: skip retraining
        cfg["generator_kwargs"] = dict(cfg.get("generator_kwargs") or {}, steps=0)
    model = MODELS.build(cfg)
    load_checkpoint(model, (work_dir / "last_checkpoint").read_text().strip(), map_location="cpu", logger="silent")
    return model.eval()


def run_contrastive(pairs: Path, work_dir: Path, *, positives: str, iters: int, batch_size: int,
                    nda: str | None, seed: int = 0, size: int = 32, launcher: str = "none") -> dict[str, Any]:
    """One contrastive run; returns its final loss and the probe."""
    from mmengine.dist import get_world_size

    from nda_plugins.mmengine.copgen import probe

    options = {
        "model.nda": nda,
        "model.seed": seed,
        "train_dataloader.dataset.data_root": str(pairs),
        "train_dataloader.dataset.positives": positives,
        "train_dataloader.batch_size": batch_size,
        "train_cfg.max_iters": iters,
        "default_hooks.checkpoint.interval": iters,
        "default_hooks.logger.interval": max(1, iters // 5),
    }
    runner = _runner("contrastive", work_dir, options, launcher=launcher)
    runner.train()
    _check_replicas(runner)
    model = getattr(runner.model, "module", runner.model)
    loss = runner.message_hub.get_scalar("train/loss").current()
    return {"positives": positives, "iters": iters, "batch_size": batch_size, "world_size": get_world_size(),
            "nda": nda, "final_loss": float(loss), "probe": probe(model.encoder, size=size)}


@click.group()
def main() -> None:
    """COP-Gen on mmengine (see the module docstring)."""
    logging.getLogger("mmengine").setLevel(logging.WARNING)
    click.get_current_context().call_on_close(finish_distributed)  # under torchrun: close the group


@main.command()
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--iters", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--generator", default=None, help="'package.module:callable' or a torch.save-d module; default: a small GAN trained on the fly")
@click.option("--generator-steps", type=click.IntRange(min=0), default=300, show_default=True, help="training steps of the default generator")
@click.option("--size", type=click.IntRange(min=8), default=32, show_default=True, help="image side of the default generator")
@click.option("--latent-dim", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--resume", is_flag=True, help="continue from WORK_DIR's last checkpoint")
@click.option("--estimator-lr", type=click.FloatRange(min=0, min_open=True), default=3e-5, show_default=True)
@click.option("--navigator-lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="none", show_default=True,
              help="'pytorch' under torchrun (several processes; gloo on CPU)")
def navigator(work_dir, iters, batch_size, generator, generator_steps, size, latent_dim, seed, resume,
              estimator_lr, navigator_lr, launcher):
    """Train the navigator against the InfoNCE MI estimator."""
    if not resume and work_dir.exists():
        _check_new(work_dir, "--work-dir")
    with _user_errors():
        ckpt = train_navigator(work_dir, iters=iters, batch_size=batch_size, generator=generator,
                               generator_steps=generator_steps, size=size, latent_dim=latent_dim, seed=seed,
                               resume=resume, estimator_lr=estimator_lr, navigator_lr=navigator_lr,
                               launcher=launcher)
    _echo(f"navigator checkpoint: {ckpt}")


@main.command()
@click.option("--navigator-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--num", type=click.IntRange(min=2), default=2048, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
def generate(navigator_dir, out, num, seed):
    """Write (anchor, positive) pairs G(z), G(z + T(z)) to OUT."""
    from nda_plugins.copgen import generate_pairs

    if out.exists():
        _check_new(out, "--out")
    model = load_navigator_model(navigator_dir)
    generate_pairs(model.generator, model.navigator, out, num, seed=seed)
    click.echo(f"{num} pairs in {out}")


@main.command()
@click.option("--pairs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--positives", type=click.Choice(["generated", "augment"]), default="generated", show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--nda", default=None, help="a transform spec (e.g. 'jigsaw'): NDA views as extra InfoNCE negatives")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="none", show_default=True,
              help="'pytorch' under torchrun (several processes; gloo on CPU)")
def contrastive(pairs, work_dir, positives, iters, batch_size, nda, seed, launcher):
    """One contrastive run on PAIRS; prints the probe."""
    _check_nda(nda)
    with _user_errors():
        row = run_contrastive(pairs, work_dir, positives=positives, iters=iters, batch_size=batch_size, nda=nda,
                              seed=seed, launcher=launcher)
    _echo(json.dumps(row, indent=2))


def _echo(text: str, nl: bool = True) -> None:
    from mmengine.dist import is_main_process

    if is_main_process():
        click.echo(text, nl=nl)


def _compare(pairs: Path, work_dir: Path, iters: int, batch_size: int, nda: str | None, seed: int,
             extra: dict[str, Any] | None = None, launcher: str = "none") -> str:
    import torch
    from mmengine.dist import is_main_process

    from nda_plugins.copgen import Estimator
    from nda_plugins.mmengine.copgen import probe, write_results

    image_size = int(json.loads((pairs / "meta.json").read_text()).get("size", 0)) or None
    runs: dict[str, Any] = {}
    for positives in ("generated", "augment"):
        runs[positives] = run_contrastive(pairs, work_dir / positives, positives=positives, iters=iters,
                                          batch_size=batch_size, nda=nda, seed=seed, size=image_size or 32,
                                          launcher=launcher)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        untrained = Estimator()
    runs["untrained"] = {"positives": None, "iters": 0, "final_loss": None,
                         "probe": probe(untrained, size=image_size or 32)}
    results = {"pairs": str(pairs), "iters": iters, "batch_size": batch_size, "nda": nda, "seed": seed,
               "probe": "ridge classifier on frozen backbone features, 3 procedural classes (disc/square/ring)",
               "runs": runs, **(extra or {})}
    return write_results(work_dir, results) if is_main_process() else ""


@main.command()
@click.option("--pairs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--iters", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--nda", default=None, help="a transform spec for NDA negatives in both runs")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="none", show_default=True,
              help="'pytorch' under torchrun (several processes; gloo on CPU)")
def compare(pairs, work_dir, iters, batch_size, nda, seed, launcher):
    """Generated vs augmentation positives at equal budget; results.json + table.txt."""
    if work_dir.exists():
        _check_new(work_dir, "--work-dir")
    _check_nda(nda)
    with _user_errors():
        _echo(_compare(pairs, work_dir, iters, batch_size, nda, seed, launcher=launcher), nl=False)


@main.command(name="all")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--quick", is_flag=True, help="a smoke run of a few iterations")
@click.option("--generator", default=None, help="as for `navigator`")
@click.option("--latent-dim", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--nda", default=None, help="as for `compare`")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--navigator-iters", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--contrastive-iters", type=click.IntRange(min=1), default=200, show_default=True,
              help="iterations of each contrastive run (the same for both: equal budget)")
@click.option("--estimator-lr", type=click.FloatRange(min=0, min_open=True), default=3e-5, show_default=True)
@click.option("--navigator-lr", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True)
@click.option("--launcher", type=click.Choice(LAUNCHERS), default="none", show_default=True,
              help="'pytorch' under torchrun (several processes; gloo on CPU)")
def all_(work_dir, quick, generator, latent_dim, nda, seed, navigator_iters, contrastive_iters, estimator_lr, navigator_lr,
         launcher):
    """navigator -> generate -> compare in WORK_DIR."""
    if work_dir.exists():
        _check_new(work_dir, "--work-dir")
    s = dict(nav_iters=4, nav_batch=8, gen_steps=2, size=16, num=64, iters=4, batch=16) if quick else \
        dict(nav_iters=navigator_iters, nav_batch=32, gen_steps=300, size=32, num=1024, iters=contrastive_iters,
             batch=64)
    from mmengine.dist import barrier, is_main_process

    from nda_plugins.copgen import generate_pairs

    _check_nda(nda)
    nav_dir = work_dir / "navigator"
    with _user_errors():
        train_navigator(nav_dir, iters=s["nav_iters"], batch_size=s["nav_batch"], generator=generator,
                        generator_steps=s["gen_steps"], size=s["size"], latent_dim=latent_dim, seed=seed,
                        estimator_lr=estimator_lr, navigator_lr=navigator_lr, launcher=launcher)
    if is_main_process():
        model = load_navigator_model(nav_dir)
        generate_pairs(model.generator, model.navigator, work_dir / "pairs", s["num"], seed=seed + 1)
    barrier()
    navigator_stats = json.loads((nav_dir / "navigator_stats.json").read_text())
    _echo(f"navigator after {navigator_stats['iters']} iterations: ||z' - z|| = "
               f"{navigator_stats['step_norm_mean']:.4f} +- {navigator_stats['step_norm_std']:.4f}")
    with _user_errors():
        _echo(_compare(work_dir / "pairs", work_dir / "compare", s["iters"], s["batch"], nda, seed,
                       extra={"navigator": navigator_stats}, launcher=launcher), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
