"""mmengine child registries of ``nda_plugins``: configs say ``type='nda_plugins.X'``.

Importing this module needs mmengine (extra ``mmengine``). The registries' ``locations`` are
imported on the first build, which registers every class of ``nda_plugins.mmengine``.
"""

from __future__ import annotations

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

# Modules imported when a registry first builds.
LOCATIONS = [
    "nda_plugins.mmengine.compat",
    "nda_plugins.mmengine.hooks",
    "nda_plugins.mmengine.video_data",
    "nda_plugins.mmengine.dpc",
    "nda_plugins.mmengine.copgen",
]

MODELS = Registry("model", parent=MMENGINE_MODELS, scope="nda_plugins", locations=LOCATIONS)
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="nda_plugins", locations=LOCATIONS)
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="nda_plugins", locations=LOCATIONS)
MODEL_WRAPPERS = Registry(
    "model_wrapper", parent=MMENGINE_MODEL_WRAPPERS, scope="nda_plugins", locations=LOCATIONS
)

OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor",
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope="nda_plugins",
    locations=LOCATIONS,
)

__all__ = ["DATASETS", "HOOKS", "LOCATIONS", "MODELS", "MODEL_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS"]
