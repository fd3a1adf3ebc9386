"""``nda anomaly-score``: AUROC of a trained discriminator's scores, in-distribution vs OOD folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("anomaly-score")
@click.option("--in", "in_dir", type=_DIR, required=True, help="Folder of in-distribution images.")
@click.option("--ood", "ood_dirs", type=_DIR, multiple=True, required=True, help="Folder of OOD images (repeat).")
@click.option("--biggan", "biggan", type=_DIR, default=None,
              help="A BigGAN-PyTorch run's weight folder (D.pth, state_dict.pth); needs --upstream.")
@click.option("--upstream", type=_DIR, default=None, help="The BigGAN-PyTorch checkout the run used.")
@click.option("--suffix", default=None, help="BigGAN checkpoint suffix, e.g. best0 or copy0.")
@click.option("--label", type=click.IntRange(min=0), default=0, show_default=True,
              help="BigGAN: class index fed with every image (0 for unconditional runs).")
@click.option("--factory", default=None, help="Any scorer: 'package.module:callable' returning a torch.nn.Module.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With --factory: a torch.save'd state_dict of that module.")
@click.option("--size", type=click.IntRange(min=1), default=None, help="Resize images to SIZE x SIZE.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many images per folder.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write anomaly.json and anomaly.png here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")
def anomaly_score(in_dir, ood_dirs, biggan, upstream, suffix, label, factory, checkpoint, size, limit,
                  batch_size, out, as_json):
    """AUROC of a discriminator's score on --in images against each --ood folder (NDA paper, Table 5).

    \b
      nda anomaly-score --biggan weights/run --upstream BigGAN-PyTorch --in cifar10/test --ood svhn --ood dtd
      nda anomaly-score --factory mypkg.models:make_d --checkpoint d.pt --in in/ --ood ood/ --out report/
    """
    from .. import anomaly

    if (biggan is None) == (factory is None):
        raise click.UsageError("give exactly one of --biggan (with --upstream) or --factory")
    try:
        if biggan is not None:
            if upstream is None:
                raise click.UsageError("--biggan needs --upstream (the BigGAN-PyTorch checkout)")
            if checkpoint is not None:
                raise click.UsageError("--checkpoint goes with --factory; --biggan reads D.pth itself")
            from nda_plugins.adapters.biggan.anomaly import biggan_scorer

            scorer = anomaly.load_scorer(biggan_scorer, None, weights=biggan, upstream=upstream,
                                         label=label, name_suffix=suffix)
        else:
            if upstream is not None or suffix is not None:
                raise click.UsageError("--upstream / --suffix go with --biggan")
            scorer = anomaly.load_scorer(factory, checkpoint)
        result = anomaly.report(scorer, in_dir, list(ood_dirs), size=size, batch_size=batch_size, limit=limit)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2) if as_json else anomaly.format_table(result))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "anomaly.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        drawn = anomaly.plot(result, out / "anomaly.png")
        click.echo(f"wrote {out / 'anomaly.json'}" + (f" and {out / 'anomaly.png'}" if drawn else
                                                        " (no plot: pip install nda-plugins[demo])"), err=as_json)
