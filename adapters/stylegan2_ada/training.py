"""Call sites of the patched ``training/training_loop.py``: step, snapshot, resume.

Each function is a no-op for a loss without NDA (no ``--nda``), except that ADA's ``p`` is
saved in and restored from snapshots written by a patched run: upstream saves the augment pipe
but restores neither ``p`` nor any step counter on ``--resume``, so an ADA run restarted from a
snapshot starts again at ``p = 0``.
"""

from __future__ import annotations

from typing import Any

import torch

#: key of the snapshot dict that holds our state (extra keys survive legacy.load_network_pkl).
SNAPSHOT_KEY = "nda_plugins"
_VERSION = 1


def _session_loss(loss: Any):
    return loss if getattr(loss, "nda", None) is not None else None


def step(loss: Any) -> None:
    """After each training iteration, on every rank, beside ADA's ``p`` adjustment.

    Steps NDA's schedule and ANDA's alpha (its update all-reduces the statistic over ranks).
    """
    if _session_loss(loss) is not None:
        loss.nda_advance()


def tick_fields(loss: Any) -> list[str]:
    """Extra fields for the status line printed once per tick (e.g. ``nda_w 0.750``)."""
    if _session_loss(loss) is None:
        return []
    fields = [f"nda_w {loss.nda.weight(loss.nda_step):.3f}"]
    if loss.nda.alpha is not None:
        fields.append(f"anda_alpha {loss.nda.alpha:.3f}")
    return fields


def snapshot(snapshot_data: dict, loss: Any, augment_pipe: Any = None) -> None:
    """Add NDA's state and ADA's ``p`` to a snapshot dict; call on every rank.

    Args:
        snapshot_data: the dict upstream pickles (``G``, ``D``, ``G_ema``, ...); gains
            ``snapshot_data["nda_plugins"] = {"version", "step", "session", "ada_p"}``.
        loss: the training loss object.
        augment_pipe: upstream's augment pipe or ``None``.
    """
    if not isinstance(snapshot_data, dict):
        raise TypeError(f"snapshot_data must be a dict, got {type(snapshot_data).__name__}")
    has_nda = _session_loss(loss) is not None
    snapshot_data[SNAPSHOT_KEY] = {
        "version": _VERSION,
        "step": loss.nda_step if has_nda else None,
        "session": loss.nda_state_dict() if has_nda else None,
        "ada_p": float(augment_pipe.p) if augment_pipe is not None else None,
    }


def _broadcast(state: Any, device: torch.device) -> Any:
    box = [state]
    torch.distributed.broadcast_object_list(box, src=0, device=device)
    return box[0]


def _for_rank(session_state: dict, seed: int) -> dict:
    """Rank 0's session state for another rank: keep alpha and the step, drop rank 0's random
    generator and keep this rank's seed, so ranks do not draw identical negatives after resume."""
    from nda_plugins.plugins.builtin_policy import STATE_KEY

    own = session_state.get(STATE_KEY)
    if not isinstance(own, dict):
        return session_state
    return dict(session_state, **{STATE_KEY: dict(own, seed=seed, generator=None)})


def resume(
    loss: Any,
    *,
    resume_data: dict | None,
    resuming: bool,
    augment_pipe: Any = None,
    ada_target: float | None = None,
    num_gpus: int = 1,
    rank: int = 0,
    device: torch.device | None = None,
) -> dict | None:
    """Restore NDA's state and ADA's ``p`` from a snapshot; call on every rank after the loss is built.

    Upstream loads the snapshot on rank 0 only; with several GPUs the state is broadcast from
    rank 0 (every rank must call this when ``resuming``).

    Args:
        loss: the training loss object.
        resume_data: the loaded snapshot dict on rank 0, ``None`` elsewhere (or not resuming).
        resuming: whether ``--resume`` was given (the same on every rank).
        augment_pipe: upstream's augment pipe or ``None``.
        ada_target: ADA's target; ``p`` is restored only when ADA adapts it (not for
            ``--aug=fixed``, where the user's ``--p`` wins).
        num_gpus: number of ranks.
        rank: this rank.
        device: this rank's device (for the broadcast).

    Returns:
        The restored state dict, or ``None`` when the snapshot has none.

    Raises:
        ValueError: the snapshot's NDA state does not fit the current ``--nda*`` flags.
    """
    if not resuming:
        return None
    state = resume_data.get(SNAPSHOT_KEY) if isinstance(resume_data, dict) else None
    if num_gpus > 1:
        state = _broadcast(state, device if device is not None else torch.device("cpu"))
    if state is None:
        return None
    if not isinstance(state, dict) or state.get("version") != _VERSION:
        raise ValueError(f"snapshot[{SNAPSHOT_KEY!r}] has an unknown format: {type(state).__name__}")
    notes = []
    if _session_loss(loss) is not None and state.get("session") is not None:
        session_state = state["session"]
        if rank != 0:
            session_state = _for_rank(session_state, loss.nda.seed)
        try:
            loss.nda_load_state_dict(session_state)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"the snapshot's NDA state does not fit the current --nda/--anda flags ({exc}); resume "
                "with the flags of the run that wrote it") from exc
        notes.append(f"NDA step {loss.nda_step}, w {loss.nda.weight(loss.nda_step):.4f}"
                     + (f", alpha {loss.nda.alpha:.4f}" if loss.nda.alpha is not None else ""))
    if augment_pipe is not None and ada_target is not None and state.get("ada_p") is not None:
        augment_pipe.p.copy_(torch.as_tensor(state["ada_p"]))
        notes.append(f"ADA p {state['ada_p']:.4f}")
    if rank == 0 and notes:
        print("Restored " + "; ".join(notes))
    return state
