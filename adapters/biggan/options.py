"""The ``--nda*`` flags of a patched BigGAN-PyTorch ``utils.prepare_parser``.

:data:`FLAGS` is the single map from a flag to the :class:`nda_plugins.NDASession` argument it
sets; :func:`add_arguments` declares them (so ``python train.py --help`` lists them beside
upstream's) and :func:`session_kwargs` turns a parsed config into session arguments.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

#: flag -> (config key, ``NDASession`` argument).
FLAGS: dict[str, tuple[str, str]] = {
    "--nda": ("nda", "transform"),
    "--nda_weight": ("nda_weight", "weight"),
    "--nda_mode": ("nda_mode", "mode"),
    "--nda_schedule": ("nda_schedule", "schedule"),
}

#: flags that shape the run around the session (config key -> default).
EXTRA_FLAGS: dict[str, tuple[str, Any]] = {
    "--nda_start_epoch": ("nda_start_epoch", 0),
    "--unconditional": ("unconditional", False),
}


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def _epochs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0 (epochs), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0 (epochs), got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Declare the NDA flags on upstream's parser (the one call the patch adds).

    Args:
        parser: upstream's ``ArgumentParser`` from ``utils.prepare_parser``.

    Returns:
        ``parser``, with an "NDA" argument group.
    """
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"parser must be an argparse.ArgumentParser, got {type(parser).__name__}")
    group = parser.add_argument_group("NDA (negative data augmentation, nda-plugins)")
    group.add_argument(
        "--nda", type=str, default=None,
        help="Negative transform spec, e.g. jigsaw or jigsaw:grid=2 (see `nda list`); off when not given.")
    group.add_argument(
        "--nda_weight", type=_weight, default=0.75,
        help="w: the share of negatives on D's fake side (the NDA paper's lambda is 1 - w; its best "
             "CIFAR-10 setting lambda=0.25 is w=0.75) (default: %(default)s)")
    group.add_argument(
        "--nda_mode", type=str, default="weighted", choices=("weighted", "replace"),
        help="weighted: a separate negative term (one more D pass); replace: each fake replaced by a "
             "negative with probability w (no extra pass) (default: %(default)s)")
    group.add_argument(
        "--nda_schedule", type=str, default="constant",
        help="Schedule of w over iterations, e.g. constant or linear:steps=1000 (default: %(default)s)")
    group.add_argument(
        "--nda_start_epoch", type=_epochs, default=0,
        help="Curriculum: NDA off for the first N epochs (default: %(default)s)")
    group.add_argument(
        "--unconditional", action="store_true", default=False,
        help="Train without classes (every label 0; one class embedding) (default: %(default)s)")
    return parser


def session_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """``NDASession`` keyword arguments from a parsed config (``vars(args)``), ``{}`` without ``--nda``.

    Raises:
        ValueError: a value the session refuses; the message names the flag.
    """
    if not config.get("nda"):
        return {}
    kwargs: dict[str, Any] = {}
    for flag, (key, arg) in FLAGS.items():
        if config.get(key) is not None:
            kwargs[arg] = config[key]
    kwargs["seed"] = int(config.get("seed") or 0)
    from nda_plugins._session import check_session_flags

    check_session_flags(kwargs, {arg: flag for flag, (_, arg) in FLAGS.items()})
    return kwargs
