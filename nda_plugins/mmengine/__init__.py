"""mmengine integration: NDAHook, DPC with video NDA, the procedural video dataset, workarounds.

Needs the ``mmengine`` extra. Importing a submodule registers its classes in
:mod:`nda_plugins.registry`.
"""
