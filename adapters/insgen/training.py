"""Call sites of the patched InsGen training loop (identical to StyleGAN2-ADA's; see there)."""

from __future__ import annotations

from ..stylegan2_ada.training import SNAPSHOT_KEY, resume, snapshot, step, tick_fields

__all__ = ["SNAPSHOT_KEY", "resume", "snapshot", "step", "tick_fields"]
