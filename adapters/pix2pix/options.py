"""The ``--nda*`` flags of ``--model pix2pix_nda`` (argparse, added in ``modify_commandline_options``).

:data:`FLAGS` is the single map from a flag to the :class:`nda_plugins.NDASession` argument it
sets; :func:`add_options` declares them and :func:`session_kwargs` turns parsed options into
session arguments (validating them, so a bad value fails before training starts).
"""

from __future__ import annotations

import argparse
from typing import Any

#: flag -> (attribute of upstream's ``opt``, ``NDASession`` argument)
FLAGS: dict[str, tuple[str, str]] = {
    "--nda": ("nda", "transform"),
    "--nda_weight": ("nda_weight", "weight"),
    "--nda_mode": ("nda_mode", "mode"),
    "--nda_schedule": ("nda_schedule", "schedule"),
    "--nda_seed": ("nda_seed", "seed"),
}

#: upstream ``--gan_mode`` values the NDA model supports, and the matching loss kind in
#: :mod:`nda_plugins.losses` (upstream's ``vanilla`` GANLoss is BCE on logits).
GAN_MODES = {"vanilla": "bce", "lsgan": "lsgan"}


def add_options(parser: argparse.ArgumentParser, is_train: bool = True) -> argparse.ArgumentParser:
    """Declare the NDA flags on upstream's option parser (training only).

    Args:
        parser: upstream's ``argparse`` parser, after ``Pix2PixModel.modify_commandline_options``.
        is_train: upstream's ``is_train``; test-time parsing gets no NDA flags.

    Returns:
        ``parser``.
    """
    if not is_train:
        return parser
    group = parser.add_argument_group("negative data augmentation (nda-plugins)")
    group.add_argument("--nda", type=str, default=None,
                       help="transform spec making negatives of real_B, e.g. jigsaw, 'jigsaw:grid=2', cutout "
                            "(see `nda list`); off when not given")
    group.add_argument("--nda_weight", type=float, default=None,
                       help="w in [0, 1): the share of negatives on D's fake side (NDA paper lambda = 1 - w; "
                            "default 0.75)")
    group.add_argument("--nda_mode", type=str, default=None, choices=["weighted", "replace"],
                       help="weighted: a separate negative term (one extra D pass); replace: each fake pair "
                            "replaced by a negative pair with probability w (no extra pass)")
    group.add_argument("--nda_schedule", type=str, default=None,
                       help="schedule of w over iterations, e.g. constant, 'curriculum:steps=5000'")
    group.add_argument("--nda_seed", type=int, default=None,
                       help="seed of the negatives' generator (the DDP rank is added)")
    return parser


def session_kwargs(opt: Any) -> dict[str, Any]:
    """``NDASession`` keyword arguments from parsed options (``{}`` when ``--nda`` is not given).

    Args:
        opt: upstream's parsed options (an ``argparse.Namespace``).

    Raises:
        ValueError: an NDA flag without ``--nda``, an unsupported ``--gan_mode``, or a value
            ``NDASession`` refuses; the message names the flag.
    """
    given = {attr: getattr(opt, attr, None) for attr, _ in FLAGS.values()}
    if given["nda"] is None:
        extra = sorted(flag for flag, (attr, _) in FLAGS.items() if given[attr] is not None)
        if extra:
            raise ValueError(f"{', '.join(extra)} need(s) --nda (e.g. --nda jigsaw)")
        return {}
    gan_mode = getattr(opt, "gan_mode", "vanilla")
    if gan_mode not in GAN_MODES:
        raise ValueError(f"--nda supports --gan_mode {' or '.join(GAN_MODES)}, got --gan_mode {gan_mode!r}")
    kwargs = {arg: given[attr] for attr, arg in FLAGS.values() if given[attr] is not None}
    from nda_plugins._session import check_session_flags

    check_session_flags(kwargs, {arg: flag for flag, (_, arg) in FLAGS.items()})
    return kwargs
