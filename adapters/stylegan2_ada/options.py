"""The ``--nda*`` / ``--anda*`` flags of a patched StyleGAN2-ADA ``train.py``.

The patch declares the click options (so ``python train.py --help`` lists them next to
upstream's) and calls :func:`configure` once, at the end of ``setup_training_loop_kwargs``.
:data:`FLAGS` is the single map from a flag to the :class:`nda_plugins.NDASession` argument it
sets; the contract tests check the patch against it.
"""

from __future__ import annotations

import re
from typing import Any, MutableMapping

import click

from . import LOSS_CLASS

#: flag -> (``setup_training_loop_kwargs`` keyword, ``NDASession`` argument).
FLAGS: dict[str, tuple[str, str]] = {
    "--nda": ("nda", "transform"),
    "--nda-weight": ("nda_weight", "weight"),
    "--nda-mode": ("nda_mode", "mode"),
    "--nda-schedule": ("nda_schedule", "schedule"),
    "--anda": ("anda", "anda"),
    "--anda-lambda": ("anda_lambda", "anda_lambda"),
    "--anda-target": ("anda_target", "anda_target"),
    "--anda-interval": ("anda_interval", "anda_interval"),
    "--anda-kimg": ("anda_kimg", "anda_kimg"),
}

#: the loss ``train.py`` selects before NDA; anything else means another patch changed it.
UPSTREAM_LOSS = "training.loss.StyleGAN2Loss"


class NDAOptionError(click.BadParameter, ValueError):
    """A bad ``--nda*`` flag: click prints it as a usage error; code can catch ``ValueError``."""


def session_kwargs(*, batch_size: int, seed: int, **flags: Any) -> dict[str, Any]:
    """The ``NDASession`` keyword arguments for the given flag values (``None`` = default).

    Args:
        batch_size: total batch size over all GPUs (``args.batch_size``; ANDA's step size).
        seed: the run's random seed (``args.random_seed``); the loss adds the rank.
        **flags: keyword names of :data:`FLAGS` (``nda``, ``nda_weight``, ...).

    Returns:
        A JSON-friendly dict, or ``{}`` when ``nda`` is ``None`` (NDA off).

    Raises:
        NDAOptionError: an unknown keyword, an NDA flag without ``--nda``, or a value that
            ``NDASession`` refuses (the message names the flag).
    """
    by_keyword = {kw: (flag, arg) for flag, (kw, arg) in FLAGS.items()}
    unknown = sorted(set(flags) - set(by_keyword))
    if unknown:
        raise NDAOptionError(f"unknown NDA options {unknown}; expected some of {sorted(by_keyword)}")
    given = {kw: v for kw, v in flags.items() if v is not None and v is not False}
    if flags.get("nda") is None:
        if given:
            names = ", ".join(by_keyword[kw][0] for kw in sorted(given))
            raise NDAOptionError(f"{names} need(s) --nda (e.g. --nda=jigsaw)", param_hint="--nda")
        return {}
    kwargs: dict[str, Any] = {by_keyword[kw][1]: v for kw, v in given.items()}
    kwargs["anda"] = bool(flags.get("anda") or False)
    kwargs["batch_size"] = int(batch_size)
    kwargs["seed"] = int(seed)
    # Validate now, so a bad flag fails before the run directory is created.
    from nda_plugins._session import SessionFlagError, check_session_flags

    try:
        check_session_flags(kwargs, {arg: flag for flag, (_, arg) in FLAGS.items()})
    except SessionFlagError as exc:
        raise NDAOptionError(exc.reason, param_hint=exc.flag) from exc
    return kwargs


def describe(kwargs: MutableMapping[str, Any]) -> str:
    """The run-directory suffix for these session arguments, e.g. ``-ndajigsaw-w0.75-anda``."""
    if not kwargs:
        return ""
    name = re.sub(r"[^0-9A-Za-z.-]+", "", str(kwargs["transform"]).replace(":", "-"))
    out = f"-nda{name}"
    if "weight" in kwargs:
        out += f"-w{kwargs['weight']:g}"
    if kwargs.get("mode", "weighted") != "weighted":
        out += f"-{kwargs['mode']}"
    if kwargs.get("anda"):
        out += "-anda"
    return out


def configure(
    args: MutableMapping[str, Any], *, loss_class: str = LOSS_CLASS, upstream_loss: str = UPSTREAM_LOSS, **flags: Any
) -> str:
    """Apply the NDA flags to upstream's training options; called by the patched ``train.py``.

    With ``nda=None`` (no ``--nda``) nothing changes. Otherwise ``args.loss_kwargs.class_name``
    becomes ``loss_class`` and ``args.loss_kwargs.nda_kwargs`` holds the ``NDASession``
    arguments (plain JSON, so ``training_options.json`` stays JSON).

    Args:
        args: ``setup_training_loop_kwargs``'s ``args`` (an ``EasyDict``), after
            ``batch_size``, ``random_seed`` and ``loss_kwargs`` are set.
        loss_class: the loss to select.
        upstream_loss: the loss ``train.py`` selected, which ``loss_class`` subclasses.
        **flags: the flag values, keyword names of :data:`FLAGS`.

    Returns:
        The suffix for the run directory name (``""`` when NDA is off).

    Raises:
        NDAOptionError: see :func:`session_kwargs`; also when another loss than upstream's was
            already selected.
    """
    kwargs = session_kwargs(batch_size=args["batch_size"], seed=args["random_seed"], **flags)
    if not kwargs:
        return ""
    current = args["loss_kwargs"].get("class_name")
    if current not in (upstream_loss, loss_class):
        raise NDAOptionError(
            f"--nda replaces the loss {upstream_loss!r}, but loss_kwargs.class_name is {current!r}; "
            "another patch changed the loss", param_hint="--nda")
    args["loss_kwargs"]["class_name"] = loss_class
    args["loss_kwargs"]["nda_kwargs"] = dict(kwargs)
    return describe(kwargs)
