"""``nda demo``: the numerosity demo (default) and ``nda demo anomaly``.

Both train a small GAN twice per seed (baseline, then NDA through the library's transforms and
objectives), evaluate, print a table, and write ``results.json``, ``table.txt``, a plot and PNG
sample grids into a run folder. Results never overwrite a previous run: when the folder given by
``--out`` (default ``./nda-runs/<demo>``) exists and is not empty, ``<out>-2``, ``<out>-3``, ... is
used instead and the path is printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

_QUICK_HELP = "Tiny settings for a smoke test (well under a minute; the numbers mean nothing). Flags given explicitly still win."


def _parse_seeds(ctx, param, value):
    if value is None:
        return None
    try:
        seeds = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 0,1,2, got {value!r}") from None
    if not seeds:
        raise click.BadParameter(f"expected at least one seed, got {value!r}")
    wide = [seed for seed in seeds if not 0 <= seed < 2**64]
    if wide:
        raise click.BadParameter(f"expected seeds in [0, 2**64 - 1] (what torch.manual_seed takes), got {wide}")
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"expected distinct seeds, got {value!r}")
    return seeds


def _default(config_cls, name: str) -> Any:
    value = {f.name: f.default for f in dataclasses.fields(config_cls)}[name]
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def _settings(config_cls, quick_values: dict[str, Any], given: dict[str, Any], quick: bool):
    """Build a config: explicit flags, then ``--quick`` values, then the defaults."""
    values = dict(quick_values) if quick else {}
    values.update({key: value for key, value in given.items() if value is not None})
    return config_cls(**values)


def _common_options(config_cls, quick_values: dict[str, Any], demo_name: str):
    """The flags both demos share; help texts show the default and the --quick value."""

    def show(name):
        text = f"default {_default(config_cls, name)}"
        if name in quick_values:
            quick = quick_values[name]
            text += f"; --quick: {','.join(map(str, quick)) if isinstance(quick, tuple) else quick}"
        return f"[{text}]"

    options = [
        click.option("--seeds", callback=_parse_seeds, metavar="0,1,2",
                     help=f"Comma-separated seeds; each trains one baseline and one NDA run from the same "
                          f"seed (same data, initialisation and random stream). {show('seeds')}"),
        click.option("--steps", type=click.IntRange(min=1), help=f"Training steps per run. {show('steps')}"),
        click.option("--batch-size", type=click.IntRange(min=1), help=f"Batch size. {show('batch_size')}"),
        click.option("--width", type=click.IntRange(min=1),
                     help=f"Base channel width of the generator and discriminator. {show('width')}"),
        click.option("--nda-weight", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
                     help=f"Share w of negatives on the discriminator's fake side in the NDA run "
                          f"(NDA paper's lambda = 1 - w). {show('nda_weight')}"),
        click.option("--n-train", type=click.IntRange(min=1),
                     help=f"Training images generated per seed. {show('n_train')}"),
        click.option("--n-eval", type=click.IntRange(min=1),
                     help=f"Images evaluated per run (and per set). {show('n_eval')}"),
        click.option("--quick", is_flag=True, help=_QUICK_HELP),
        click.option("--out", type=click.Path(path_type=Path), default=None,
                     help=f"Run folder [default ./nda-runs/{demo_name}]. If it exists and is not empty, "
                          f"<out>-2, <out>-3, ... is used instead (nothing is overwritten)."),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="CPU threads for torch. The models are tiny: on a busy 2-core machine one thread "
                          "trained >10x faster per step than two (measured); try more only on an idle many-core CPU."),
    ]

    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _run(module, config, out: Path | None, demo_name: str, threads: int) -> None:
    import torch

    from ..demo import _output

    target = out if out is not None else Path("nda-runs") / demo_name
    try:
        config.validate()
        target_existed = target.exists()
        run_dir = _output.new_run_dir(target)
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    created = run_dir != target or not target_existed
    if hasattr(config, "progress_total"):  # demos whose runs differ in length count their own steps
        total = config.progress_total()
        click.echo(f"nda demo {demo_name}: {len(config.seeds)} seed(s), {total} training steps in all; "
                   f"writing to {run_dir}")
    else:
        total = 2 * len(config.seeds) * config.steps
        click.echo(f"nda demo {demo_name}: {len(config.seeds)} seed(s) x (baseline + NDA) x {config.steps} steps; "
                   f"writing to {run_dir}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with click.progressbar(length=total, label="training", show_eta=True, show_pos=True) as bar:
            result = module.run(config, run_dir, progress=bar.update, log=click.echo)
    except BaseException:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a failed run leaves no empty folder behind
        raise
    finally:
        torch.set_num_threads(previous_threads)  # the CLI may run inside a bigger process (tests)
    click.echo((run_dir / "table.txt").read_text().rstrip("\n"))
    click.echo(f"took {result['seconds']:.0f} s; results, plot and sample grids in {run_dir}")


def _numerosity_options(func):
    from_config = _lazy_numerosity()
    func = click.option("--k", "k", type=click.IntRange(min=1),
                        help=f"Dots in every training image. [default {_default(from_config, 'k')}]")(func)
    func = click.option("--n-negatives", type=click.IntRange(min=1),
                        help=f"Negative images (k-2, k-1, k+1, k+2 dots) per seed. "
                             f"[default {_default(from_config, 'n_negatives')}]")(func)
    return func


def _lazy_numerosity():
    from ..demo.numerosity import NumerosityConfig

    return NumerosityConfig


def _lazy_anomaly():
    from ..demo.anomaly import AnomalyConfig

    return AnomalyConfig


def _quick(module_name: str) -> dict[str, Any]:
    import importlib

    return importlib.import_module(f"nda_plugins.demo.{module_name}").QUICK


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_common_options(_lazy_numerosity(), _quick("numerosity"), "numerosity")
@_numerosity_options
@click.pass_context
def demo(ctx, **given):
    """Show NDA at work on CPU in minutes: numerosity containment (default) or `demo anomaly`.

    Without a subcommand this runs the numerosity demo (NDA paper, appendix A): a small GAN is
    trained on 32x32 images with exactly k dots, once as a baseline and once with NDA whose
    negatives are images with k-2, k-1, k+1 and k+2 dots (library transform `source`, objective
    `nda_plugins.losses.discriminator_loss`). The dots of generated samples are counted (connected
    components) and the table shows the distribution of counts and the share with exactly k dots.

    Writes results.json (per-seed numbers and their spread), table.txt, histogram.png and sample
    grids captioned with each sample's dot count: samples_real.png, samples_negatives.png and
    samples_{baseline,nda}_seed<S>.png per seed (plot and captions need matplotlib:
    pip install nda-plugins[demo]).

    \b
    Examples:
      nda demo                  # default settings, 5-11 minutes on a 2-core CPU
      nda demo --quick          # smoke test, seconds
      nda demo --k 4 --seeds 0,1,2,3 --out runs/k4
      nda demo anomaly --help
    """
    if ctx.invoked_subcommand is not None:
        explicit = [name for name in given
                    if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT]
        if explicit:
            flags = ", ".join("--" + name.replace("_", "-") for name in explicit)
            raise click.UsageError(f"{flags} belong to the numerosity demo; put the options of "
                                   f"'{ctx.invoked_subcommand}' after it, e.g. `nda demo {ctx.invoked_subcommand} --quick`")
        return
    from ..demo import numerosity

    quick, out, threads = given.pop("quick"), given.pop("out"), given.pop("threads")
    config = _settings(numerosity.NumerosityConfig, numerosity.QUICK, given, quick)
    _run(numerosity, config, out, "numerosity", threads)


@demo.command("anomaly")
@_common_options(_lazy_anomaly(), _quick("anomaly"), "anomaly")
@click.option("--transform", default=None,
              help=f"NDA transform spec for the NDA run (see `nda list`). [default {_default(_lazy_anomaly(), 'transform')}]")
def anomaly(**given):
    """Anomaly detection with the discriminator, with and without jigsaw NDA (NDA paper, Table 5).

    A small GAN is trained on 32x32 images of one disc each, as a baseline and with jigsaw
    negatives. Its discriminator's logit scores held-out discs against out-of-distribution sets:
    other shapes (square, ring), Gaussian noise, blur, jigsaw and cutout. The table shows the
    AUROC per set (0.5 = chance), mean ± std over seeds.

    Writes results.json, table.txt, auroc.png (needs matplotlib: pip install nda-plugins[demo]),
    sets.png (one row per set) and samples_{baseline,nda}.png into the run folder.
    """
    from ..demo import anomaly as module

    quick, out, threads = given.pop("quick"), given.pop("out"), given.pop("threads")
    config = _settings(module.AnomalyConfig, module.QUICK, given, quick)
    _run(module, config, out, "anomaly", threads)


def _lazy_nat():
    from ..demo.nat import NatConfig

    return NatConfig


def _nat_options(func):
    config = _lazy_nat()
    quick = _quick("nat")

    def show(name):
        text = f"default {_default(config, name)}"
        if name in quick:
            text += f"; --quick: {quick[name]}"
        return f"[{text}]"

    options = [
        click.option("--transform", default=None,
                     help=f"Negative transform spec for NAT training (see `nda list`). {show('transform')}"),
        click.option("--thresholds", callback=_parse_thresholds, metavar="0.5,0.7,0.9",
                     help=f"Comma-separated NCR thresholds in [0, 1). {show('thresholds')}"),
        click.option("--gan-steps", type=click.IntRange(min=1), help=f"Steps per 1-D GAN run. {show('gan_steps')}"),
        click.option("--gan-batch", type=click.IntRange(min=1),
                     help=f"Reals, generated samples and negatives per 1-D GAN step. {show('gan_batch')}"),
        click.option("--eval-every", type=click.IntRange(min=1),
                     help=f"1-D GAN steps between two distance measurements. {show('eval_every')}"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _parse_thresholds(ctx, param, value):
    if value is None:
        return None
    try:
        values = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0.5,0.9, got {value!r}") from None
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise click.BadParameter(f"expected numbers in [0, 1), got {value!r}")
    return values


@demo.command("nat")
@click.option("--seeds", callback=_parse_seeds, metavar="0,1,2",
              help=f"Comma-separated seeds; each trains a baseline and a NAT classifier and a GAN and a NAT-GAN. "
                   f"[default {_default(_lazy_nat(), 'seeds')}; --quick: 0]")
@click.option("--steps", type=click.IntRange(min=1),
              help=f"Classifier training steps per run. [default {_default(_lazy_nat(), 'steps')}; --quick: {_quick('nat')['steps']}]")
@click.option("--batch-size", type=click.IntRange(min=1),
              help=f"Positives per classifier step (NAT adds as many negatives). "
                   f"[default {_default(_lazy_nat(), 'batch_size')}; --quick: {_quick('nat')['batch_size']}]")
@click.option("--width", type=click.IntRange(min=1),
              help=f"Base channel width of the classifier. "
                   f"[default {_default(_lazy_nat(), 'width')}; --quick: {_quick('nat')['width']}]")
@click.option("--n-train", type=click.IntRange(min=1),
              help=f"Training images per class. [default {_default(_lazy_nat(), 'n_train')}; --quick: {_quick('nat')['n_train']}]")
@click.option("--n-eval", type=click.IntRange(min=1),
              help=f"Held-out images per class (each negative set has as many). [default {_default(_lazy_nat(), 'n_eval')}; --quick: {_quick('nat')['n_eval']}]")
@_nat_options
@click.option("--quick", is_flag=True, help=_QUICK_HELP)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder [default ./nda-runs/nat]. If it exists and is not empty, <out>-2, <out>-3, ... "
                   "is used instead (nothing is overwritten).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads for torch (the models are tiny; one thread is usually fastest).")
def nat(**given):
    """Negative-aware training (NAT): a classifier, and the 1-D NAT-GAN experiment.

    \b
    1. A small CNN learns ten procedural shape classes, with plain cross-entropy (baseline) and
       with NAT (library transform negatives, `nda_plugins.nat.nat_loss`). The table shows the
       accuracy on held-out positives and the negative confidence rate (NCR: share of held-out
       negatives classified with top softmax > t; lower is better) per negative kind and threshold.
    2. A 1-D GAN with a categorical discriminator (`nda_plugins.nat.nat_gan_discriminator_loss`)
       on a two-mode mixture, without (GAN) and with (NAT-GAN) a negative mode between the modes;
       Wasserstein-1 to the real samples over steps.

    Writes results.json, table.txt, gan_1d.png (needs matplotlib: pip install nda-plugins[demo])
    and sets.png (one row per set: positives, then each negative kind) into the run folder.

    \b
    Examples:
      nda demo nat              # default settings, a few minutes on a 2-core CPU
      nda demo nat --quick      # smoke test, seconds
    """
    from ..demo import nat as module

    quick, out, threads = given.pop("quick"), given.pop("out"), given.pop("threads")
    config = _settings(module.NatConfig, module.QUICK, given, quick)
    _run(module, config, out, "nat", threads)
