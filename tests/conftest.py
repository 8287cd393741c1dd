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


PARITY = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``torchserve==0.12.0``'s Python package, installed once per run in a directory of its own
    (``torchserve_reference.torchserve_replies`` runs its backend from there)."""
    from torchserve_reference import install_torchserve

    return install_torchserve(tmp_path_factory.mktemp("torchserve-0.12"))


@pytest.fixture(scope="session")
def parity_figures(request: pytest.FixtureRequest) -> dict:
    """Case name -> the ``parity.Difference`` of its replies from TorchServe's, printed at the end."""
    return request.config.stash.setdefault(PARITY, {})


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The parity figures in the CI log: how far each case's numbers are from TorchServe's."""
    figures = config.stash.get(PARITY, {})
    if figures:
        terminalreporter.section("parity with TorchServe 0.12")
        for case, difference in sorted(figures.items()):
            terminalreporter.write_line(
                f"parity {case}: max |Δ| = {difference.largest:.3g} over {difference.numbers} numbers"
            )
