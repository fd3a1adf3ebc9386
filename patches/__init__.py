"""Patch series per upstream, installed as package data under ``nda_plugins.patches``.

Each sub-folder holds ``git format-patch`` files ``NNNN-subject.patch`` and a ``series`` file.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def series_dirs() -> dict[str, Path]:
    """Map each upstream name to the folder that holds its patch series."""
    return {p.name: p for p in sorted(ROOT.iterdir()) if (p / "series").is_file()}
