"""The built-in per-step policy: negatives, weight, ANDA's alpha, reports and checkpoint state.

Every answer here is an ordinary (not ``tryfirst``) implementation, so a third-party plugin
registered with ``@hookimpl(tryfirst=True)`` that returns a non-``None`` value from a
``firstresult`` hook replaces it.
"""

from __future__ import annotations

import numbers

import torch

from ..hookspecs import hookimpl
from ..schedules import AdaptiveAlpha

#: The key of the session's own state in ``NDASession.state_dict()``.
STATE_KEY = "nda_plugins.session"
_STATE_VERSION = 1


@hookimpl
def nda_make_negatives(session, real, labels, step, generator):
    """Apply the session's transform to ``real``; a negative keeps its source's label."""
    return session.transform(real, generator=generator), labels


@hookimpl
def nda_negative_weight(session, step, alpha):
    """``schedule(step)``, times ``(1 - alpha)`` under ANDA (``w = lambda * (1 - alpha)``)."""
    w = float(session.schedule(step))
    if alpha is not None:
        w *= 1.0 - alpha
    return w


@hookimpl
def nda_observe(session, step, stats):
    """Feed the discriminator's outputs on reals to ANDA's alpha (no device sync)."""
    real_logits = stats.get("real_logits")
    if session.adaptive_alpha is not None and real_logits is not None:
        session.adaptive_alpha.observe(real_logits)


@hookimpl
def nda_report(session, step):
    """``NDA/weight`` and, under ANDA, ``NDA/alpha`` (Python floats)."""
    out = {"NDA/weight": session.weight(step)}
    if session.alpha is not None:
        out["NDA/alpha"] = session.alpha
    return out


# ----------------------------------------------------------------------------------------
# Checkpoints: the session's own state (generator, step counter, ANDA's alpha)
# ----------------------------------------------------------------------------------------


@hookimpl
def nda_state_dict(session):
    gen = session._generator
    if gen is not None:
        generator = {"device": gen.device.type, "state": gen.get_state()}
    elif session._pending_generator is not None:
        device, state = session._pending_generator
        generator = {"device": device, "state": state.clone()}
    else:
        generator = None
    return STATE_KEY, {
        "version": _STATE_VERSION,
        "seed": session.seed,
        "num_advances": session.num_advances,
        "generator": generator,
        "anda": None if session.adaptive_alpha is None else session.adaptive_alpha.state_dict(),
    }


def _check_int(state: dict, key: str, high: int | None = None) -> int:
    value = state.get(key)
    too_high = high is not None and isinstance(value, numbers.Integral) and value > high
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0 or too_high:
        bound = f"an int in [0, {high}]" if high is not None else "an int >= 0"
        raise ValueError(f"state[{STATE_KEY!r}][{key!r}] must be {bound}, got {value!r}")
    return int(value)


@hookimpl
def nda_load_state_dict(session, state):
    if STATE_KEY not in state:
        return  # strict=False and no session state: nothing to restore
    own = state[STATE_KEY]
    where = f"state[{STATE_KEY!r}]"
    # Check everything first; mutate only once it all fits.
    if not isinstance(own, dict):
        raise TypeError(f"{where} must be a dict, got {type(own).__name__}")
    if own.get("version") != _STATE_VERSION:
        raise ValueError(f"{where}['version'] must be {_STATE_VERSION}, got {own.get('version')!r}")
    seed = _check_int(own, "seed", high=2**64 - 1)
    num_advances = _check_int(own, "num_advances")
    generator = own.get("generator")
    if generator is not None:
        if not isinstance(generator, dict) or not isinstance(generator.get("device"), str):
            raise ValueError(f"{where}['generator'] must be None or {{'device': str, 'state': ByteTensor}}")
        device = generator["device"]
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            parsed = None
        if parsed is None or parsed.type != device:
            raise ValueError(f"{where}['generator']['device'] must be a device type such as 'cpu' or 'cuda', "
                             f"got {device!r}")
        gen_state = generator.get("state")
        if not isinstance(gen_state, torch.Tensor) or gen_state.dtype != torch.uint8 or gen_state.dim() != 1:
            raise ValueError(f"{where}['generator']['state'] must be a 1-D uint8 tensor from Generator.get_state()")
        # Generator.set_state takes a CPU tensor; torch.load(map_location="cuda") moves it to the GPU.
        gen_state = gen_state.detach().cpu()
        try:  # a generator of that type must accept the state (the CPU's checks its size)
            probe = torch.Generator(device=generator["device"]) if generator["device"] == "cpu" else None
            if probe is not None:
                probe.set_state(gen_state.clone())
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{where}['generator']['state'] is not a valid {generator['device']} generator state: {exc}") from exc
    anda = own.get("anda")
    if (anda is None) != (session.adaptive_alpha is None):
        raise ValueError(
            f"{where}['anda'] is {'missing' if anda is None else 'present'} but this session has "
            f"anda={session.adaptive_alpha is not None}; resume with the same --anda setting"
        )
    new_alpha = None
    if anda is not None:
        current = session.adaptive_alpha
        new_alpha = AdaptiveAlpha(
            batch_size=current.batch_size,
            target=current.target,
            interval=current.interval,
            speed_kimg=current.speed_kimg,
        )
        new_alpha.load_state_dict(anda)  # validates; raises before the session is touched
    # Commit.
    session.seed = seed
    session.num_advances = num_advances
    session._generator = None
    session._pending_generator = None
    if generator is not None:
        gen = torch.Generator(device="cpu") if generator["device"] == "cpu" else None
        if gen is not None:
            gen.set_state(gen_state.clone())
            session._generator = gen
        else:  # device-specific generators are recreated on the first batch's device
            session._pending_generator = (generator["device"], gen_state.clone())
    if new_alpha is not None:
        session.adaptive_alpha = new_alpha
