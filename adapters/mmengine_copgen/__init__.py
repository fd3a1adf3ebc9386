"""COP-Gen on mmengine: configs and a launcher.

- ``navigator_config.py``: navigator/estimator minimax (``nda_plugins.COPGenNavigator``).
- ``contrastive_config.py``: contrastive training on generated pairs (``nda_plugins.PairContrastive``).
- ``launch.py``: ``python -m nda_plugins.adapters.mmengine_copgen.launch {navigator,generate,contrastive,compare,all}``;
  ``train_copgen.sh`` runs ``all``.

The configs are mmengine config files; :func:`config_path` gives their installed paths.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_path"]


def config_path(name: str) -> Path:
    """Path of a shipped config: ``"navigator"`` or ``"contrastive"``."""
    if name not in ("navigator", "contrastive"):
        raise ValueError(f"name must be 'navigator' or 'contrastive', got {name!r}")
    return Path(__file__).with_name(f"{name}_config.py")
