"""A model's dependencies: today every model runs with the server's own packages.

The archive's ``requirementsFile`` is not installed yet (``install_py_dep_per_model`` is
warned about); this builtin answers ``hookserve_install_dependencies`` last, so a plugin
that installs requirements into a per-model folder takes precedence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import ModelEnvironment

if TYPE_CHECKING:
    from hookserve.archive.reading import ModelArchive
    from hookserve.config import ServerConfig


@hookimpl(trylast=True)
def hookserve_install_dependencies(archive: ModelArchive, config: ServerConfig) -> ModelEnvironment:
    return ModelEnvironment()
