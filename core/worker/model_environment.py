"""A model worker enters the environment ``hookserve_install_dependencies`` prepared for its
model version, before it imports anything of the model's."""

from __future__ import annotations

import importlib
import os
import sys

from hookserve.plugin_types import ModelEnvironment


def enter_model_environment(environment: ModelEnvironment) -> None:
    """Put the environment's folders in front of ``sys.path`` (the model's own requirements
    win over the server's packages, as in a virtual environment) and set its variables."""
    if environment.sys_path:
        sys.path[:0] = environment.sys_path
        importlib.invalidate_caches()
    os.environ.update(environment.environ)
