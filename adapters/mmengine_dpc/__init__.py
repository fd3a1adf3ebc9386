"""DPC with video NDA on mmengine: configs (``configs/``), the launch script ``train.py`` and ``train.sh``."""

from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def config_path(name: str) -> str:
    """Path of a shipped config, e.g. ``config_path("dpc_nda_moving_shapes")``."""
    path = CONFIG_DIR / f"{name}.py"
    if not path.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise ValueError(f"no config named {name!r}; shipped configs: {names}")
    return str(path)
