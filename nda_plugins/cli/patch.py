"""``nda patch``: apply, check and revert the upstream patch series shipped with nda-plugins."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import _patching

_PATH = click.Path(exists=True, file_okay=False, path_type=Path)


def _fail(exc: _patching.PatchError) -> None:
    raise click.ClickException(str(exc))


@click.group()
def patch() -> None:
    """Apply, check and revert upstream patch series (StyleGAN2-ADA, DiffAugment, InsGen).

    \b
      nda patch list
      nda patch check stylegan2-ada path/to/stylegan2-ada-pytorch
      nda patch apply stylegan2-ada path/to/stylegan2-ada-pytorch
      nda patch status path/to/stylegan2-ada-pytorch
      nda patch revert stylegan2-ada path/to/stylegan2-ada-pytorch
      nda patch build-ops path/to/stylegan2-ada-pytorch
    """


@patch.command("list")
@click.option("--verbose", "-v", is_flag=True, help="Show why each patch exists.")
def list_series(verbose: bool) -> None:
    """List the series, their pinned commits and patches."""
    for name, series in sorted(_patching.available().items()):
        aliases = series.meta.get("aliases", [])
        where = f"{series.meta.get('repo', '?')} @ {series.commit[:7]}"
        if series.subdir:
            where += f" ({series.subdir}/)"
        click.echo(f"{name}{' (' + ', '.join(aliases) + ')' if aliases else ''}: {where}")
        for p in series.patches:
            click.echo(f"  {p.name}")
            if verbose and series.comments.get(p.name):
                click.echo(f"      {series.comments[p.name]}")


@patch.command()
@click.argument("name")
@click.argument("path", type=_PATH)
def check(name: str, path: Path) -> None:
    """Dry run: say whether NAME's series would apply (or revert) on PATH. Changes nothing."""
    try:
        report = _patching.check(name, path)
    except _patching.PatchError as exc:
        _fail(exc)
    click.echo(f"{report['upstream']} at {report['root']}: {report['state']}")
    if report["ok"]:
        click.echo(f"ok: the series would {report['action']} cleanly ({len(report['patches'])} patches)")
    else:
        raise click.ClickException(report["error"])


@patch.command()
@click.argument("name")
@click.argument("path", type=_PATH)
@click.option("--allow-dirty", is_flag=True, help="Apply even if tracked files the series does not touch have local changes.")
def apply(name: str, path: Path, allow_dirty: bool) -> None:
    """Apply NAME's series to the checkout at PATH (atomic; a second apply is a no-op)."""
    try:
        click.echo(_patching.apply(name, path, allow_dirty=allow_dirty))
    except _patching.PatchError as exc:
        _fail(exc)


@patch.command()
@click.argument("name")
@click.argument("path", type=_PATH)
def revert(name: str, path: Path) -> None:
    """Revert NAME's series at PATH: the touched files return to the pinned upstream exactly."""
    try:
        click.echo(_patching.revert(name, path))
    except _patching.PatchError as exc:
        _fail(exc)


@patch.command()
@click.argument("path", type=_PATH)
@click.option("--name", default=None, help="Series to check against (default: identify by file hashes).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(path: Path, name: str | None, as_json: bool) -> None:
    """Identify the upstream at PATH and say whether its series is applied.

    Exits with 1 when PATH is no checkout of a known upstream (or of --name's).
    """
    try:
        report = _patching.status(path, name)
    except _patching.PatchError as exc:
        _fail(exc)
    unknown = report.get("upstream") is None or report["state"] == _patching.NOT_CHECKOUT
    if as_json:
        click.echo(json.dumps(report, indent=2))
        if unknown:
            raise SystemExit(1)
        return
    if report.get("upstream") is None:
        raise click.ClickException(
            f"{report['path']} is not a checkout of any known upstream: none of the patch series' files "
            f"match (known: {', '.join(sorted(_patching.available()))}). `nda patch list` shows each "
            f"upstream's repository and pinned commit; pass --name NAME to compare with one series.")
    if report["state"] == _patching.NOT_CHECKOUT:
        raise click.ClickException(f"{report['path']}: {report['message']}")
    click.echo(f"{report['path']}: {report['upstream'] or 'unknown upstream'}: {report['state']}")
    if report.get("upstream"):
        pinned = report["pinned"][:7]
        commit = report.get("commit")
        if commit:
            click.echo(f"  commit {commit[:7]} ({'the pinned commit' if report['commit_matches'] else 'pinned: ' + pinned})")
        else:
            click.echo(f"  no git metadata; identified by file hashes (pinned: {pinned})")
        for f, s in report["files"].items():
            click.echo(f"  {s:9} {f}")
        if report.get("dirty"):
            click.echo("  local changes: " + ", ".join(report["dirty"]))
    click.echo("  " + report["message"])


@patch.command("build-ops")
@click.argument("path", type=_PATH)
@click.option("--clear-stale-locks", is_flag=True,
              help="Delete the ops' build locks that no process on this machine holds (left by a build "
                   "that was killed; torch <= 2.13 waits on them forever), then build.")
def build_ops(path: Path, clear_stale_locks: bool) -> None:
    """Build the fused CUDA ops (bias_act, upfirdn2d) of the checkout at PATH and report the result.

    Exits with 1 if a CUDA device is present and an op did not build (training would silently
    fall back to the slow reference ops), or, before building, if a stale build lock would make
    the build wait forever (--clear-stale-locks deletes it).
    """
    import torch

    if torch.cuda.is_available():
        _check_build_locks(clear_stale_locks)
    try:
        report = _patching.fused_ops(path)
    except _patching.PatchError as exc:
        _fail(exc)
    if "error" in report:
        raise click.ClickException(report["error"])
    if not report.get("cuda"):
        click.echo("no CUDA device: the fused ops are only built and used on CUDA (CPU runs use the reference ops)")
        return
    failed = [op for op in ("bias_act", "upfirdn2d") if not report[op]["built"]]
    for op in ("bias_act", "upfirdn2d"):
        click.echo(f"{op:10} {'built' if report[op]['built'] else 'FAILED: ' + (report[op]['error'] or '')}")
    if failed:
        raise click.ClickException(f"{', '.join(failed)} did not build; see `nda doctor` for compilers and stale locks")


def _check_build_locks(clear: bool) -> None:
    """Refuse to build behind a stale lock (or delete it with ``clear``); say which locks a
    running build holds, since the build will wait for it."""
    stale = []
    for lock, state in _patching.fused_op_locks():
        if state == _patching.LOCK_HELD:
            click.echo(f"waiting for the build that holds {lock}")
        elif state == _patching.LOCK_UNKNOWN:
            click.echo(f"{lock}: cannot tell whether a build holds it (no /proc); the build waits while it exists")
        elif state == _patching.LOCK_STALE:
            stale.append(lock)
    if stale and not clear:
        them = "them" if len(stale) > 1 else "it"
        raise click.ClickException(
            f"stale build lock{'s' if len(stale) > 1 else ''}: {', '.join(map(str, stale))}. No process on this "
            f"machine holds {them} (a build that was killed left {them}), and this PyTorch waits for as long as "
            f"a lock file exists. Rerun with --clear-stale-locks to delete {them} (unless a build on another "
            f"machine shares this folder).")
    for lock in stale:
        try:
            lock.unlink()
        except FileNotFoundError:
            continue  # the build that held it finished meanwhile
        except OSError as exc:
            raise click.ClickException(f"could not delete the stale build lock {lock}: {exc}") from exc
        click.echo(f"deleted stale build lock {lock}")
