"""NDA views for MoCo queries: which transform, how many views, which weight, and their state.

One :class:`nda_plugins.NDASession` per transform of the mix (so every view goes through the
``nda_make_negatives`` hook, and every session's generator is checkpointed). With several
transforms, one is drawn per batch from a hash of ``(seed, step)``: stateless, so a resumed run
draws the same transform for a step as an uninterrupted one, and no device sync is needed.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from nda_plugins import NDASession
from nda_plugins.schedules import check_step

__all__ = ["NDAViews", "parse_transforms"]

_STATE_VERSION = 1
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def parse_transforms(spec: str) -> list[str]:
    """Split ``"jigsaw:grid=2+stitch"`` into transform specs (``+`` separates the mix).

    Raises:
        ValueError: an empty spec or an empty part.
    """
    if not isinstance(spec, str):
        raise TypeError(f"--nda must be a string of transform specs joined by '+', got {type(spec).__name__}")
    parts = [p.strip() for p in spec.split("+")]
    if not spec.strip() or any(not p for p in parts):
        raise ValueError(f"--nda must be transform specs joined by '+' (e.g. 'jigsaw' or 'jigsaw+stitch'), got {spec!r}")
    return parts


class NDAViews:
    """Makes ``M`` NDA views of each query image and gives the weight ``w`` of their keys.

    Args:
        transforms: one transform spec (``"jigsaw"``, ``"jigsaw:grid=3"``), several joined by
            ``+`` (one drawn per batch), or a sequence of specs.
        weight: ``w`` in ``[0, 1)`` multiplying the NDA keys' terms in the InfoNCE denominator
            (passed to the schedule as its target weight).
        schedule: a schedule spec from :mod:`nda_plugins.schedules` (e.g. ``"linear:steps=500"``).
        views: ``M``, NDA views per query (int >= 1).
        seed: seeds the sessions' generators and the per-batch transform draw.
        rank: distributed rank; each rank's sessions get their own seed.

    Example:
        >>> import torch
        >>> nda = NDAViews("jigsaw", weight=0.5, views=2)
        >>> nda.views(torch.rand(4, 3, 32, 32), step=0).shape
        torch.Size([2, 4, 3, 32, 32])
    """

    def __init__(
        self,
        transforms: str | Sequence[str] = "jigsaw",
        *,
        weight: float = 0.75,
        schedule: str = "constant",
        views: int = 1,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        specs = parse_transforms(transforms) if isinstance(transforms, str) else list(transforms)
        if not specs or not all(isinstance(s, str) and s for s in specs):
            raise ValueError(f"transforms must be non-empty transform specs, got {transforms!r}")
        for name, value, low in (("views", views, 1), ("seed", seed, 0), ("rank", rank, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.specs = specs
        self.num_views = int(views)
        self.seed = int(seed)
        self.rank = int(rank)
        self.sessions = [
            NDASession(transform=spec, weight=weight, schedule=schedule, seed=self.seed + 1_000_003 * self.rank + 7919 * i)
            for i, spec in enumerate(specs)
        ]

    def pick(self, step: int) -> int:
        """Index of the transform used at ``step`` (the same on every rank and after a resume)."""
        step = check_step(step)
        if len(self.sessions) == 1:
            return 0
        return _mix64(_mix64(self.seed) ^ step) % len(self.sessions)

    def views(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """``M`` NDA views of every image of ``x``.

        Args:
            x: ``(B, C, H, W)`` query images (the augmented query view).
            step: the training step.

        Returns:
            ``(M, B, C, H, W)``: view ``m`` of image ``b`` at ``[m, b]``.
        """
        session = self.sessions[self.pick(step)]
        return torch.stack([session.negatives(x, step=step)[0] for _ in range(self.num_views)])

    def weight(self, step: int) -> float:
        """``w`` at ``step`` from the library's schedule."""
        return self.sessions[0].weight(step)

    def advance(self) -> None:
        """End of a training step (every session, so their step counters agree)."""
        for session in self.sessions:
            session.advance()

    def report(self, step: int) -> dict[str, Any]:
        """Scalars to log: ``NDA/weight`` and the transform used at ``step``."""
        return {"NDA/weight": self.weight(step), "NDA/transform": self.specs[self.pick(step)]}

    def state_dict(self) -> dict[str, Any]:
        """The sessions' states (generators, counters) and the mix, for checkpoints."""
        return {
            "version": _STATE_VERSION,
            "specs": list(self.specs),
            "views": self.num_views,
            "sessions": [s.state_dict() for s in self.sessions],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; refuses another mix or view count.

        Raises:
            ValueError: ``state`` was saved with other ``--nda`` settings; nothing is changed.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise ValueError(f"NDA state must be a dict with version {_STATE_VERSION} from NDAViews.state_dict()")
        if state.get("specs") != self.specs or state.get("views") != self.num_views:
            raise ValueError(
                f"NDA state was saved with transforms {state.get('specs')} and {state.get('views')} views, "
                f"this run has {self.specs} and {self.num_views}; resume with the same --nda and --nda-views"
            )
        before = [s.state_dict() for s in self.sessions]
        try:
            for session, own in zip(self.sessions, state["sessions"], strict=True):
                session.load_state_dict(own)
        except BaseException:
            for session, own in zip(self.sessions, before):
                session.load_state_dict(own)
            raise
