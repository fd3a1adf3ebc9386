"""Adapters: one sub-package per upstream, installed as ``nda_plugins.adapters``.

The repository keeps them in the top-level ``adapters/`` folder; the wheel installs them under the
``nda_plugins`` namespace so that no top-level module named ``adapters`` is ever installed.
"""
