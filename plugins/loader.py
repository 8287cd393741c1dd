"""Builtin model loader (``trylast`` ``hookserve_load``): the formats TorchServe's
``BaseHandler`` loads, with safe defaults.

* ``serializedFile`` ending in ``.pt2``: a ``torch.export`` program (``torch.export.load``);
* ``modelFile`` given: the one ``nn.Module`` subclass defined in it, instantiated, with the
  state dict from ``serializedFile`` (if any) loaded with ``weights_only=True``;
* any other ``serializedFile``: TorchScript (``torch.jit.load``).

Returns ``None`` for an archive with neither file, so the caller reports that nothing
could load it. torch is imported inside the hook: frontends import this module too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hookserve.errors import ArchiveError
from hookserve.hookspecs import hookimpl
from hookserve.module_loading import import_from_dir, list_classes_from_module


@hookimpl(trylast=True)
def hookserve_load(archive: Any, context: Any) -> Any:
    import torch

    from hookserve.handlers.base_handler import worker_device

    if not archive.serialized_file and not archive.model_file:
        return None
    device = worker_device(context)
    weights = Path(archive.model_dir, archive.serialized_file) if archive.serialized_file else None

    exported = weights is not None and weights.suffix == ".pt2"
    model_class = _model_class(archive) if archive.model_file and not exported else None
    try:
        if exported:
            return torch.export.load(weights).module().to(device)
        if model_class is not None:
            model = model_class()
            if weights is not None:
                model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
            return model.to(device)
        return torch.jit.load(weights, map_location=device)
    except Exception as exc:
        raise ArchiveError(
            f"model {archive.name!r}: cannot load {archive.serialized_file or archive.model_file!r} "
            f"({_format_of(exported, model_class)}): {type(exc).__name__}: {exc}"
        ) from exc


def _model_class(archive: Any) -> type:
    import torch

    module_name = Path(archive.model_file).with_suffix("").as_posix().replace("/", ".")
    try:
        module = import_from_dir(archive.model_dir, module_name)
    except Exception as exc:
        raise ArchiveError(
            f"model {archive.name!r}: cannot import model file {archive.model_file!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    classes = list_classes_from_module(module, torch.nn.Module)
    if len(classes) != 1:
        raise ArchiveError(
            f"model {archive.name!r}: model file {archive.model_file!r} must define exactly one "
            f"torch.nn.Module subclass, found {[cls.__name__ for cls in classes]}"
        )
    return classes[0]


def _format_of(exported: bool, model_class: type | None) -> str:
    if exported:
        return "torch.export program"
    if model_class is not None:
        return f"state dict of {model_class.__name__}, loaded with weights_only=True"
    return "TorchScript; for a state dict, name the file defining the model class as modelFile"
