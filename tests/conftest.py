"""Fixtures shared by the test modules (helpers that are plain functions live in helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hookserve.pluginmanager import Hooks, create_plugin_manager


@pytest.fixture
def forget_archive_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Modules imported in-process from a test's archives (``model``, ``handler``) must not
    leak into other tests."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").resolve().is_relative_to(tmp_path.resolve()):
            del sys.modules[name]


@pytest.fixture
def hooks() -> Hooks:
    """Hooks over the builtin plugins only (no installed entry points)."""
    return Hooks(create_plugin_manager(third_party=False))
