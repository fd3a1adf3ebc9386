"""Every hook of nda-plugins, in one module, grouped by when it is called.

Hooks are called with keyword arguments only. An implementation may accept any subset of a
spec's arguments (pluggy passes only the ones it names), so specs only ever *gain* arguments.

Who calls them:

* :class:`nda_plugins.NDASession` -- the object every adapter and patched call site holds. It is
  the only caller of the per-step hooks below, so an upstream integration never talks to pluggy
  directly.
* :func:`nda_plugins.transforms.available` / :func:`~nda_plugins.transforms.build` and
  :func:`nda_plugins.schedules.build` -- the registration hooks, once per plugin manager.

Built-in answers live in :mod:`nda_plugins.plugins` and are registered through the same
mechanism as third-party plugins (entry-point group ``nda_plugins``), so a third-party plugin can
override any of them: register with ``@hookimpl(tryfirst=True)`` and return a non-``None`` value
from a ``firstresult`` hook.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "nda_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------------------------
# Registration (historic: a plugin registered late still receives the call)
# --------------------------------------------------------------------------------------------


@hookspec(historic=True)
def nda_register_transforms(registry):
    """Add negative transforms.

    Called once per plugin manager, for every plugin, including ones registered later.

    Args:
        registry: a :class:`nda_plugins.transforms.TransformRegistry`. Call
            ``registry.add(name, factory)`` where ``factory(**options)`` returns a callable
            ``t(x, *, generator=None) -> Tensor`` (see :mod:`nda_plugins.transforms`).

    Returns:
        Nothing.
    """


@hookspec(historic=True)
def nda_register_schedules(registry):
    """Add weight schedules (functions of the training step).

    Args:
        registry: a :class:`nda_plugins.schedules.ScheduleRegistry`. Call
            ``registry.add(name, factory)`` where ``factory(**options)`` returns a callable
            ``schedule(step: int) -> float``.

    Returns:
        Nothing.
    """


# --------------------------------------------------------------------------------------------
# Per training step (called by NDASession)
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def nda_make_negatives(session, real, labels, step, generator):
    """Produce the negative batch for one discriminator (or encoder) step.

    Called by ``NDASession.negatives`` once per step that needs negatives. The built-in answer
    applies the session's transform to ``real``; a plugin can return other negatives (e.g. a
    curriculum over transforms, or samples from a bank).

    Args:
        session: the calling :class:`nda_plugins.NDASession`.
        real: ``(B, C, H, W)`` or ``(B, C, T, H, W)`` tensor of real samples.
        labels: ``(B,)`` integer labels or ``(B, c_dim)`` conditioning, or ``None``.
        step: the training step (non-negative int).
        generator: the session's ``torch.Generator`` (on ``real``'s device).

    Returns:
        ``(negatives, negative_labels)`` with ``negatives`` shaped like ``real`` and
        ``negative_labels`` shaped like ``labels`` (or ``None``), or ``None`` to defer to the next
        implementation. First non-``None`` result wins.
    """


@hookspec(firstresult=True)
def nda_negative_weight(session, step, alpha):
    """The negative share ``w`` of the fake side at ``step``.

    Called by ``NDASession.weight``. The built-in answer is ``schedule(step)``, multiplied by
    ``(1 - alpha)`` when ANDA is on (ANDA's ``w = lambda * (1 - alpha)``).

    Args:
        session: the calling :class:`nda_plugins.NDASession`.
        step: the training step (non-negative int).
        alpha: ANDA's current alpha in ``[0, 1]``, or ``None`` when ANDA is off.

    Returns:
        A Python float in ``[0, 1)``, or ``None`` to defer. First non-``None`` result wins.
    """


@hookspec
def nda_observe(session, step, stats):
    """Receive training statistics once per step.

    Called by ``NDASession.observe``. The built-in ANDA plugin reads ``stats["real_logits"]``
    (the discriminator's raw outputs on real samples, any shape) to adapt alpha.
    A plugin that reads keys other than ``real_logits`` / ``fake_logits`` / ``neg_logits``
    declares them as ``nda_stats_keys = {"my_key"}`` on the plugin; other keys get a warning.

    Args:
        session: the calling :class:`nda_plugins.NDASession`.
        step: the training step.
        stats: ``dict[str, Tensor]``; tensors stay on their device (no host sync is forced).

    Returns:
        Ignored.
    """


@hookspec
def nda_report(session, step):
    """Scalars to log at ``step``.

    Returns:
        ``dict[str, float | Tensor]`` (names like ``"NDA/weight"``), or ``None``. The session
        merges every implementation's answer.
    """


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@hookspec
def nda_state_dict(session):
    """Export plugin state for a checkpoint.

    Returns:
        ``(key, state)`` where ``state`` is a dict of tensors / Python numbers, or ``None`` for a
        stateless plugin. Keys must be unique across plugins.
    """


@hookspec
def nda_load_state_dict(session, state):
    """Restore plugin state from a checkpoint.

    Args:
        session: the calling session.
        state: the ``dict[key, state]`` that ``nda_state_dict`` produced. An implementation
            picks its own key and must not mutate the dict.
    """
