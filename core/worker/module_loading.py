"""Importing the Python files that come inside a model archive (handler, model definition).

TorchServe puts the model directory on ``sys.path`` and imports by module name, so a
handler can ``import`` its sibling files; hookserve does the same. No torch here: the model
manager and frontends may import this module.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from types import ModuleType


def list_classes_from_module(module: ModuleType, parent_class: type | None = None) -> list[type]:
    """Classes defined in ``module`` itself (not imported into it), in name order.

    With ``parent_class``, only its subclasses. Same contract as TorchServe's
    ``ts.utils.util.list_classes_from_module``.
    """
    classes = [
        member for _, member in inspect.getmembers(module, inspect.isclass) if member.__module__ == module.__name__
    ]
    if parent_class is not None:
        return [cls for cls in classes if issubclass(cls, parent_class)]
    return classes


def import_from_dir(directory: str | Path, module_name: str) -> ModuleType:
    """Import ``module_name`` (dotted names allowed) with ``directory`` first on ``sys.path``.

    A module of the same name imported earlier from another place is replaced when
    ``directory`` provides that module: two models' ``model.py`` in one process (tests, a
    reloaded model) must not share the first one's code. Modules the directory does not
    provide (installed packages) are left as they are, so class identities stay intact.
    """
    directory = str(Path(directory).resolve())
    if directory in sys.path:
        sys.path.remove(directory)
    sys.path.insert(0, directory)
    # Files written after this directory was first scanned must be found.
    importlib.invalidate_caches()
    parts = module_name.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        cached = sys.modules.get(name)
        if cached is not None and _provided_by(directory, parts[:depth]) and not _is_from(cached, directory):
            for stale in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
                del sys.modules[stale]
    return importlib.import_module(module_name)


def _provided_by(directory: str, parts: list[str]) -> bool:
    base = Path(directory, *parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_from(module: ModuleType, directory: str) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(directory)
