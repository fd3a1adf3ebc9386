"""``NDAHook``: the NDA session's lifecycle inside an mmengine ``Runner``.

Protocol (any mmengine model can follow it): the model (unwrapped) has an attribute
``nda_session`` holding an :class:`nda_plugins.NDASession` (or ``None`` to train without NDA).
Before each training iteration the hook sets ``model.nda_step`` (the runner's iteration) and
``model.nda_weight`` (``w`` from the session's schedule); the model reads them in its loss.
After the iteration the hook advances the session once and logs ``w`` and every entry of the
model's optional ``nda_terms`` dict (floats or scalar tensors) through the message hub as
``train/<name>``. The session's state (generator, ANDA's alpha) goes into checkpoints under
``"nda_state"`` and is restored on resume.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from nda_plugins._session import NDASession
from nda_plugins.registry import HOOKS

CHECKPOINT_KEY = "nda_state"


def _unwrap(model: Any) -> Any:
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class NDAHook(Hook):
    """Step the NDA weight schedule, log ``w`` and the NDA loss terms, checkpoint the NDA state.

    Args:
        log_terms: also log the model's ``nda_terms`` dict.
    """

    priority = "NORMAL"

    def __init__(self, log_terms: bool = True) -> None:
        if not isinstance(log_terms, bool):
            raise TypeError(f"log_terms must be a bool, got {type(log_terms).__name__} {log_terms!r}")
        self.log_terms = log_terms

    @staticmethod
    def _session(runner) -> NDASession | None:
        model = _unwrap(runner.model)
        if not hasattr(model, "nda_session"):
            raise TypeError(
                f"NDAHook needs a model with an 'nda_session' attribute (an NDASession or None); "
                f"{type(model).__name__} has none"
            )
        session = model.nda_session
        if session is not None and not isinstance(session, NDASession):
            raise TypeError(
                f"model.nda_session must be an NDASession or None, got {type(session).__name__}"
            )
        return session

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = _unwrap(runner.model)
        session = self._session(runner)
        model.nda_step = runner.iter
        model.nda_weight = 0.0 if session is None else session.weight(runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = _unwrap(runner.model)
        session = self._session(runner)
        if session is None:
            return
        session.advance()
        hub = runner.message_hub
        hub.update_scalar("train/nda_weight", float(model.nda_weight))
        for key, value in session.report(runner.iter).items():
            if isinstance(value, (int, float)):
                hub.update_scalar(f"train/{key}", float(value))
        if self.log_terms:
            for key, value in (getattr(model, "nda_terms", None) or {}).items():
                if isinstance(value, torch.Tensor):
                    value = value.detach().float().mean()
                hub.update_scalar(f"train/{key}", value)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        session = self._session(runner)
        if session is not None:
            checkpoint[CHECKPOINT_KEY] = session.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        session = self._session(runner)
        if session is None:
            return
        if CHECKPOINT_KEY not in checkpoint:
            raise ValueError(
                f"the checkpoint has no {CHECKPOINT_KEY!r} entry to restore the NDA session from "
                f"(saved without NDAHook?); keys: {sorted(checkpoint)}"
            )
        session.load_state_dict(checkpoint[CHECKPOINT_KEY])


__all__ = ["CHECKPOINT_KEY", "NDAHook"]
