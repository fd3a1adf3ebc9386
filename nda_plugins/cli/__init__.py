"""The ``nda`` command line.

Every subcommand lives in its own module and is imported only when it runs, so ``nda --help``
is fast and keeps working when a subcommand's module or its optional dependency is missing (the
broken subcommand then explains itself instead of breaking the whole CLI).
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

#: name -> ("module:attribute", short help shown by ``nda --help`` without importing it).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "anomaly-score": ("nda_plugins.cli.anomaly:anomaly_score", "AUROC of a trained D's scores: in-distribution vs OOD folders."),
    "demo": ("nda_plugins.cli.demo:demo", "Run the built-in NDA demo."),
    "doctor": ("nda_plugins.cli.doctor:doctor", "Report versions, compilers, extras, patch status."),
    "list": ("nda_plugins.cli.list_cmd:list_cmd", "List plugins, transforms, schedules, adapters."),
    "patch": ("nda_plugins.cli.patch:patch", "Apply, check and revert upstream patch series."),
    "preview": ("nda_plugins.cli.preview:preview", "Write a PNG grid of images and their negatives."),
}


def _unavailable(name: str, target: str, exc: BaseException) -> click.Command:
    """A stand-in command that reports why ``name`` could not be loaded."""
    reason = f"{type(exc).__name__}: {exc}"

    @click.command(
        name=name,
        help=f"(unavailable) {target} could not be loaded: {reason}",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def stub():
        raise click.ClickException(
            f"'nda {name}' is unavailable: importing {target} failed with {reason}. "
            "Is an optional dependency missing? See `nda doctor`."
        )

    return stub


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on demand from ``module:attribute`` paths.

    Args:
        lazy_subcommands: ``{name: ("module:attribute", short_help)}``.
    """

    def __init__(self, *args, lazy_subcommands: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_subcommands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy_subcommands:
            return super().get_command(ctx, cmd_name)
        target = self.lazy_subcommands[cmd_name][0]
        module_name, _, attr = target.partition(":")
        try:
            command = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # a missing module or optional dependency must not break `nda`
            return _unavailable(cmd_name, target, exc)
        if not isinstance(command, click.Command):
            return _unavailable(cmd_name, target, TypeError(f"{target} is not a click command"))
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the static short help so that `nda --help` imports no subcommand module.
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, self.lazy_subcommands[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy_subcommands=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="nda", message="%(prog)s %(version)s")
def main() -> None:
    """nda: negative data augmentation plugins for GAN and self-supervised training.

    \b
    Examples:
      nda list                     # plugins, transforms, schedules, adapters, patch series
      nda preview --out neg.png    # see what the discriminator will be taught to reject
      nda doctor --upstream ../stylegan2-ada-pytorch
    """
    from .._manager import set_broken_plugin_handler

    # A broken third-party plugin costs one line on stderr, not the command.
    set_broken_plugin_handler(lambda name, reason: click.echo(f"nda: plugin {name!r} skipped: {reason}", err=True))
