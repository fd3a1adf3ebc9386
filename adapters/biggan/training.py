"""Call sites of the patched BigGAN-PyTorch ``train.py`` and ``train_fns.py``.

``train.py``::

    nda_biggan.configure(config)                   # after the activations are resolved
    nda_biggan.prepare_state(state_dict, config)   # before utils.load_weights
    GD = nda_biggan.wrap(GD, state_dict, config)   # after upstream's DataParallel block
    y = nda_biggan.labels(y, config)               # each real batch (--unconditional)

``train_fns.GAN_training_function``, in the D loop and at the end of an iteration::

    D_loss_real, D_loss_fake = nda_biggan.d_losses(GD, D_fake, D_real, D_loss_real, D_loss_fake,
                                                   loss_fn=losses.discriminator_loss)
    out.update(nda_biggan.step(GD))

Without ``--nda`` every call returns its input unchanged (``wrap`` returns ``GD`` itself), so
the patched tree trains exactly as upstream.

The objective is the NDA paper's: D's fake side becomes ``(1 - w) * L(D(G(z))) + w * L(D(neg))``
(their released BigGAN code: ``L_real + 0.25 L_fake + 0.75 L_nda``, i.e. ``w = 0.75``), with the
loss kind of upstream's ``losses.discriminator_loss`` (hinge by default, or the DCGAN loss) and
negatives made from the real batch of the same D step. A negative keeps its source's label.
G's loss is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, MutableMapping

import torch
import torch.nn as nn

from nda_plugins import losses as _losses

from . import options as _options

#: key of upstream's ``state_dict`` (saved as ``state_dict.pth``) that holds NDA's state.
STATE_KEY = "nda_plugins"
_VERSION = 1

#: upstream loss function name -> :data:`nda_plugins.losses.KINDS` entry.
LOSS_KINDS = {"loss_hinge_dis": "hinge", "loss_dcgan_dis": "logistic"}


def loss_kind(loss_fn: Callable) -> str:
    """The :mod:`nda_plugins.losses` kind of one of upstream's D losses.

    Args:
        loss_fn: upstream's ``losses.discriminator_loss`` (``loss_hinge_dis`` or ``loss_dcgan_dis``).

    Raises:
        ValueError: an unknown loss function (the message lists the known ones).
    """
    name = getattr(loss_fn, "__name__", None)
    if name not in LOSS_KINDS:
        raise ValueError(
            f"loss_fn must be one of upstream's D losses {sorted(LOSS_KINDS)}, got {name or loss_fn!r}; "
            "NDA needs to know its per-sample term"
        )
    return LOSS_KINDS[name]


# ------------------------------------------------------------------------------------------
# train.py
# ------------------------------------------------------------------------------------------


def configure(config: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Check the ``--nda*`` flags before anything is built; ``--unconditional`` sets one class.

    Raises:
        SystemExit: a bad flag, with a one-line message naming it (as argparse does).
    """
    try:
        _options.session_kwargs(config)
    except ValueError as exc:
        raise SystemExit(f"train.py: error: {exc}") from None
    if config.get("unconditional"):
        config["n_classes"] = 1
    return config


def prepare_state(state_dict: MutableMapping[str, Any], config: MutableMapping[str, Any]) -> None:
    """Add the NDA slot to upstream's ``state_dict`` (``load_weights`` only restores keys it has)."""
    if config.get("nda"):
        state_dict.setdefault(STATE_KEY, None)


def labels(y: torch.Tensor, config: MutableMapping[str, Any]) -> torch.Tensor:
    """The real labels as D sees them: all ``0`` with ``--unconditional``, else ``y`` itself."""
    return torch.zeros_like(y) if config.get("unconditional") else y


def wrap(gd: nn.Module, state_dict: MutableMapping[str, Any], config: MutableMapping[str, Any]) -> nn.Module:
    """``gd`` itself without ``--nda``; else an :class:`NDAGD` around it, with NDA state restored
    from ``state_dict[STATE_KEY]`` when resuming a checkpoint that has it.

    Raises:
        ValueError: the checkpoint's NDA state does not fit the current flags.
    """
    kwargs = _options.session_kwargs(config)
    if not kwargs:
        return gd
    from nda_plugins import NDASession

    wrapper = NDAGD(gd, NDASession(**kwargs), state_dict=state_dict,
                    start_epoch=int(config.get("nda_start_epoch") or 0))
    saved = state_dict.get(STATE_KEY)
    if saved:
        wrapper.load_nda_state(saved)
        print(f"Restored NDA state: step {wrapper.session.num_advances}")
    return wrapper


# ------------------------------------------------------------------------------------------
# train_fns.py
# ------------------------------------------------------------------------------------------


def d_losses(gd: nn.Module, d_fake: torch.Tensor, d_real: torch.Tensor, loss_real: torch.Tensor,
             loss_fake: torch.Tensor, *, loss_fn: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's ``(D_loss_real, D_loss_fake)`` with the negative term of the last weighted D pass.

    Args:
        gd: the (possibly wrapped) ``G_D`` the step ran.
        d_fake: ``(B, 1)`` D outputs on fakes; ``d_real``: ``(B, 1)`` on reals.
        loss_real, loss_fake: upstream's two loss terms for them.
        loss_fn: upstream's ``losses.discriminator_loss`` (its kind is used for the negatives).

    Returns:
        ``(loss_real, loss_fake)`` unchanged unless ``gd`` ran a weighted NDA pass; then the fake
        term is ``(1 - w) * L(d_fake) + w * L(D(neg))``.
    """
    if not isinstance(gd, NDAGD) or gd.pending is None:
        return loss_real, loss_fake
    d_neg, w = gd.pending
    gd.pending = None
    return loss_real, _losses.fake_side_loss(d_fake, d_neg, nda_weight=w, kind=loss_kind(loss_fn))


def step(gd: nn.Module) -> dict[str, float]:
    """End of a training iteration: one NDA step, its state into ``state_dict``; scalars to log."""
    if not isinstance(gd, NDAGD):
        return {}
    return gd.nda_step()


# ------------------------------------------------------------------------------------------
# The wrapper
# ------------------------------------------------------------------------------------------


class NDAGD(nn.Module):
    """Upstream's ``G_D`` (or ``DataParallel(G_D)``) with negatives in the discriminator step.

    Same call signature as ``G_D.forward``. G steps (``train_G=True`` or no real batch) and D
    steps at ``w = 0`` call the wrapped module unchanged. Otherwise, with the real batch ``x``
    and labels ``dy``: negatives ``neg = T(x)`` keep ``dy``; G runs without grad as upstream's
    D step does, and D sees

    * ``weighted``: upstream's pass on ``cat(G(z), x)`` (two with ``split_D``), then one pass on
      ``neg``; the negatives' outputs wait in :attr:`pending` for :func:`d_losses`;
    * ``replace``: ``cat(mix, x)`` where each fake row is replaced by its negative with
      probability ``w`` (label too), and upstream's loss is used as is.

    Under ``DataParallel`` G and D run through ``nn.parallel.data_parallel`` with the wrapped
    module's devices, as upstream's sample helpers do; the negatives and coins are drawn once on
    the output device with the session's generator.

    Args:
        gd: upstream's ``G_D`` or ``DataParallel(G_D)``.
        session: the :class:`nda_plugins.NDASession`.
        state_dict: upstream's ``state_dict`` (read: ``epoch``; written: ``nda_plugins``).
        start_epoch: curriculum, ``w = 0`` while ``state_dict["epoch"] < start_epoch``.
    """

    def __init__(self, gd: nn.Module, session: Any, *, state_dict: MutableMapping[str, Any],
                 start_epoch: int = 0) -> None:
        super().__init__()
        inner = gd.module if isinstance(gd, nn.DataParallel) else gd
        if not (hasattr(inner, "G") and hasattr(inner, "D")):
            raise TypeError(f"gd must be upstream's G_D (with .G and .D) or a DataParallel of it, got {type(gd).__name__}")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an int >= 0, got {start_epoch!r}")
        self.gd = gd
        self.session = session
        self.state_dict_ref = state_dict
        self.start_epoch = start_epoch
        #: ``(D(neg), w)`` of the last weighted D pass, until :func:`d_losses` takes it.
        self.pending: tuple[torch.Tensor, float] | None = None
        self.last_weight = 0.0

    @property
    def G(self) -> nn.Module:  # noqa: N802 - upstream's name
        return (self.gd.module if isinstance(self.gd, nn.DataParallel) else self.gd).G

    @property
    def D(self) -> nn.Module:  # noqa: N802 - upstream's name
        return (self.gd.module if isinstance(self.gd, nn.DataParallel) else self.gd).D

    def weight(self) -> float:
        """``w`` for the current iteration (0 during the curriculum's first epochs)."""
        if int(self.state_dict_ref.get("epoch", 0)) < self.start_epoch:
            return 0.0
        return self.session.weight(self.session.num_advances)

    def _run(self, module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        # DataParallel without devices (CPU-only torch) forwards directly, as upstream's GD does.
        if isinstance(self.gd, nn.DataParallel) and getattr(self.gd, "device_ids", None):
            return nn.parallel.data_parallel(module, inputs, device_ids=self.gd.device_ids,
                                             output_device=self.gd.output_device)
        return module(*inputs)

    def forward(self, z, gy, x=None, dy=None, train_G=False, return_G_z=False, split_D=False):
        self.pending = None
        d_step = x is not None and not train_G
        w = self.weight() if d_step else 0.0
        if d_step:
            self.last_weight = w
        if w == 0.0:
            return self.gd(z, gy, x, dy, train_G=train_G, return_G_z=return_G_z, split_D=split_D)
        # Upstream's z_ / y_ are a Tensor subclass (utils.Distribution) whose .to() re-samples
        # setup; work on plain tensors.
        z, gy = z.as_subclass(torch.Tensor), gy.as_subclass(torch.Tensor)
        step = self.session.num_advances
        neg, neg_y = self.session.negatives(x, dy, step=step)
        neg = neg.to(x.dtype)
        neg_y = dy if neg_y is None else neg_y.to(dy.dtype)
        G, D = self.G, self.D
        with torch.no_grad():
            g_z = self._run(G, z, G.shared(gy)).to(x.dtype)
        if self.session.mode == "replace":
            generator = self.session.generator_for(x.device)
            mask = _losses.replace_mask(g_z.shape[0], nda_weight=w, generator=generator, device=x.device)
            fakes = [_losses.select_replaced(mask, g_z, neg)]
            fake_y = [_losses.select_replaced(mask, gy, neg_y)]
        else:
            fakes, fake_y = [g_z, neg], [gy, neg_y]
        # Upstream's own D pass on (fakes, reals) -- one concatenated pass, or one per part with
        # split_D -- then, for weighted, a separate pass on the negatives, as the NDA paper's
        # released BigGAN code does. Like every D pass in training (and like split_D), it runs one
        # power iteration of D's spectral norm. The extra cost is one D pass on a batch of
        # negatives (a single pass over all three parts costs more on the CPU: its activations
        # leave the cache).
        if split_D:
            outs = [self._run(D, fakes[0], fake_y[0]), self._run(D, x, dy)]
        else:
            out = self._run(D, torch.cat([fakes[0], x], 0), torch.cat([fake_y[0], dy], 0))
            outs = list(torch.split(out, [fakes[0].shape[0], x.shape[0]]))
        if len(fakes) == 2:
            outs.append(self._run(D, fakes[1], fake_y[1]))
        if len(outs) == 3:
            self.pending = (outs[2], w)
        if return_G_z:  # upstream returns G_z only without a real batch; kept for symmetry
            return outs[0], outs[1], g_z
        return outs[0], outs[1]

    # -- per iteration and checkpoints ----------------------------------------------------------

    def nda_step(self) -> dict[str, float]:
        """Advance the session one iteration and store its state in upstream's ``state_dict``.

        Returns:
            ``{"NDA_w": w}`` of the iteration that ended (logged by upstream's ``train_log``).
        """
        w = self.last_weight
        self.session.advance()
        self.state_dict_ref[STATE_KEY] = self.nda_state()
        return {"NDA_w": float(w)}

    def nda_state(self) -> dict[str, Any]:
        """``{"version", "session"}``: what checkpoints hold under ``state_dict["nda_plugins"]``."""
        return {"version": _VERSION, "session": self.session.state_dict()}

    def load_nda_state(self, saved: Any) -> None:
        """Restore :meth:`nda_state`'s output.

        Raises:
            ValueError: an unknown format, or state that does not fit the current flags (the
                session is then unchanged).
        """
        if not isinstance(saved, dict) or saved.get("version") != _VERSION or "session" not in saved:
            raise ValueError(f"state_dict[{STATE_KEY!r}] has an unknown format: {type(saved).__name__}")
        try:
            self.session.load_state_dict(saved["session"])
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"the checkpoint's NDA state does not fit the current --nda* flags ({exc}); resume with "
                "the flags of the run that wrote it") from exc
