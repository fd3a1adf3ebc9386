"""Shared fixtures: every test gets a fresh process-wide plugin manager without third-party
autoload, so an installed plugin on the developer's machine cannot change results."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_plugin_manager(monkeypatch):
    from nda_plugins import _manager

    monkeypatch.setenv(_manager.DISABLE_AUTOLOAD_ENV, "1")
    _manager.set_plugin_manager(None)
    yield
    _manager.set_plugin_manager(None)
