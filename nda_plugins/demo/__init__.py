"""The ``nda demo`` experiments, small enough for a laptop CPU.

* :mod:`.images` -- procedural data: images with exactly k dots, simple shapes, a batched dot
  counter (connected components by label propagation).
* :mod:`.gan` -- a small DCGAN-style G/D and the training loop; NDA enters only through
  :mod:`nda_plugins.transforms` (negatives) and :mod:`nda_plugins.losses` (the objective).
* :mod:`.numerosity` -- ``nda demo``: numerosity containment (NDA paper, appendix A, Fig. 6a).
* :mod:`.anomaly` -- ``nda demo anomaly``: D as an anomaly score, AUROC per OOD set (Table 5).
* :mod:`._output` -- run folders that never overwrite, JSON, PNG grids, optional matplotlib.
"""
