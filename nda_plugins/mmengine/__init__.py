"""mmengine integration (extra ``[mmengine]``): models, datasets and hooks registered in
:mod:`nda_plugins.registry`, so configs say ``type='nda_plugins.X'``.

- :mod:`.hooks`: ``NDAHook`` (w schedule, logging, NDA state in checkpoints) for any model.
- :mod:`.dpc`, :mod:`.video_data`: Dense Predictive Coding with video NDA, procedural videos.
- :mod:`.copgen`: COP-Gen navigator training, generated-pair datasets, pair contrastive model.
- :mod:`.compat`: workarounds for mmengine 0.10 on current torch.
"""

from . import compat, copgen  # noqa: F401  (importing registers the classes)
