"""mmengine registries of nda-plugins: children of mmengine's, scope ``'nda_plugins'``.

Configs name our classes ``type='nda_plugins.X'``; the ``locations`` are imported on first
lookup, so a config needs no ``custom_imports``. Importing this module needs ``mmengine``
(extra ``[mmengine]``).
"""

from __future__ import annotations

from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

__all__ = ["DATASETS", "HOOKS", "MODELS", "OPTIM_WRAPPER_CONSTRUCTORS"]

_LOCATIONS = ["nda_plugins.mmengine"]

MODELS = Registry("model", parent=MMENGINE_MODELS, scope="nda_plugins", locations=_LOCATIONS)
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="nda_plugins", locations=_LOCATIONS)
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="nda_plugins", locations=_LOCATIONS)
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor", parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope="nda_plugins",
    locations=_LOCATIONS,
)
