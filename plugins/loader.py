"""Builtin model loader (``trylast`` ``hookserve_load``): the formats TorchServe's
``BaseHandler`` loads, with safe defaults.

* ``serializedFile`` ending in ``.pt2``: a ``torch.export`` program (``torch.export.load``);
* ``modelFile`` given: the one ``nn.Module`` subclass defined in it, instantiated, with the
  state dict from ``serializedFile`` (if any) loaded with ``weights_only=True``;
* any other ``serializedFile``: TorchScript (``torch.jit.load``).

Returns ``None`` for an archive with neither file, so the caller reports that nothing
could load it. ``BaseHandler``'s TorchServe helpers (``_load_pickled_model``,
``_load_torchscript_model``) use the ``load_*`` functions too. torch is imported inside the
functions: frontends import this module and must not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hookserve.errors import ArchiveError
from hookserve.hookspecs import hookimpl
from hookserve.module_loading import import_from_dir, list_classes_from_module


@hookimpl(trylast=True)
def hookserve_load(archive: Any, context: Any) -> Any:
    from hookserve.handlers.base_handler import worker_device

    serialized, model_file = archive.serialized_file, archive.model_file
    if not serialized and not model_file:
        return None
    device = worker_device(context)
    weights = Path(archive.model_dir, serialized) if serialized else None
    exported = weights is not None and weights.suffix == ".pt2"
    try:
        if exported:
            return load_exported(weights, device)
        if model_file:
            return load_eager(archive.model_dir, model_file, weights, device)
        return load_torchscript(weights, device)
    except Exception as exc:
        raise ArchiveError(
            f"model {archive.name!r}: cannot load {_what(serialized, model_file, exported)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _what(serialized: str | None, model_file: str | None, exported: bool) -> str:
    if exported:
        return f"torch.export program {serialized!r}"
    if model_file:
        weights = f" with state dict {serialized!r} (weights_only=True)" if serialized else ""
        return f"the model class in {model_file!r}{weights}"
    return f"{serialized!r} as TorchScript (for a state dict, name the file defining its class as modelFile)"


def load_exported(path: str | os.PathLike, device: Any) -> Any:
    import torch

    return torch.export.load(path).module().to(device)


def load_torchscript(path: str | os.PathLike, device: Any) -> Any:
    import torch

    return torch.jit.load(path, map_location=device)


def load_eager(model_dir: str | os.PathLike, model_file: str, weights: str | os.PathLike | None, device: Any) -> Any:
    """The one ``nn.Module`` subclass defined in ``model_file``, with the state dict ``weights``."""
    import torch

    module_name = Path(model_file).with_suffix("").as_posix().replace("/", ".")
    classes = list_classes_from_module(import_from_dir(model_dir, module_name), torch.nn.Module)
    if len(classes) != 1:
        raise ValueError(
            f"{model_file} must define exactly one torch.nn.Module subclass, found {[cls.__name__ for cls in classes]}"
        )
    model = classes[0]()
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return model.to(device)
