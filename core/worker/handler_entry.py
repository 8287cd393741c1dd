"""Resolve a manifest's ``handler`` string into what a model worker runs, as TorchServe's
``ts/model_loader.py`` does.

Forms, tried in this order:

* ``handler.py``, ``handler``, ``handler.py:fn``, ``pkg.module:fn``: a module imported with
  the model directory first on ``sys.path``. If it has the function (default ``handle``),
  that function is the entry point and ``initialize`` calls ``fn(None, context)``; otherwise
  the one class defined in the module is instantiated and its ``initialize`` / ``handle``
  are used.
* a name known to ``hookserve_handler_classes`` (``base_handler``, ``image_classifier`` ...)
  when no module of that name exists: that class.

The worker adapts ``HandlerEntry.handler`` with the ``hookserve_handler_plugin`` hook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hookserve.errors import ArchiveError
from hookserve.worker.module_loading import import_from_dir, list_classes_from_module


@dataclass(frozen=True)
class HandlerEntry:
    """The handler of one model: ``handler`` is the class instance or the entry function."""

    handler: Any
    _initialize: Callable[[Any], Any]
    _handle: Callable[[list, Any], Any]

    def initialize(self, context: Any) -> None:
        self._initialize(context)

    def handle(self, data: list, context: Any) -> Any:
        return self._handle(data, context)


def resolve_handler(archive: Any, hooks: Any) -> HandlerEntry:
    """The entry point named by ``archive.handler``; :class:`ArchiveError` says why there is none."""
    spec = archive.handler
    if not spec:
        raise ArchiveError(f"model {archive.name!r}: the manifest names no handler")
    module_name, _, function_name = spec.partition(":")
    module_name = Path(module_name.removesuffix(".py")).name  # TorchServe ignores folders
    function_name = function_name or "handle"

    module = _import_handler_module(archive, spec, module_name)
    if module is None:
        known = hooks.handler_classes()
        if module_name not in known:
            raise ArchiveError(
                f"model {archive.name!r}: handler {spec!r} is neither a module in {archive.model_dir} "
                f"nor a known handler name {sorted(known)}"
            )
        return _class_entry(archive, known[module_name].cls)

    function = getattr(module, function_name, None)
    if callable(function):
        return HandlerEntry(function, lambda context: function(None, context), function)
    classes = list_classes_from_module(module)
    if len(classes) != 1:
        raise ArchiveError(
            f"model {archive.name!r}: handler module {module.__name__!r} has no function "
            f"{function_name!r}, so expected exactly one class in it, found {[c.__name__ for c in classes]}"
        )
    return _class_entry(archive, classes[0])


def _import_handler_module(archive: Any, spec: str, module_name: str) -> ModuleType | None:
    """The handler module, or ``None`` when no module of that name exists at all."""
    try:
        return import_from_dir(archive.model_dir, module_name)
    except ModuleNotFoundError as exc:
        # Only the handler module itself missing means "try the known names"; a module it
        # imports being missing is the handler's error and must be shown as such.
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            return None
        raise _import_error(archive, spec, exc) from exc
    except Exception as exc:
        raise _import_error(archive, spec, exc) from exc


def _import_error(archive: Any, spec: str, exc: Exception) -> ArchiveError:
    return ArchiveError(f"model {archive.name!r}: cannot import handler {spec!r}: {type(exc).__name__}: {exc}")


def _class_entry(archive: Any, cls: type) -> HandlerEntry:
    for method in ("initialize", "handle"):
        if not callable(getattr(cls, method, None)):
            raise ArchiveError(f"model {archive.name!r}: handler class {cls.__name__} has no {method}")
    try:
        instance = cls()
    except Exception as exc:
        raise ArchiveError(
            f"model {archive.name!r}: cannot create handler {cls.__name__}(): {type(exc).__name__}: {exc}"
        ) from exc
    return HandlerEntry(instance, instance.initialize, instance.handle)
