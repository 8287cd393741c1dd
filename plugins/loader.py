"""Builtin model loader (``trylast`` ``hookserve_load``): the formats TorchServe's
``BaseHandler`` loads, with safe defaults.

* ``serializedFile`` ending in ``.pt2``: a ``torch.export`` program (``torch.export.load``);
* ``modelFile`` given: the one ``nn.Module`` subclass defined in it, instantiated, with the
  state dict from ``serializedFile`` (if any) loaded with ``weights_only=True``;
* any other ``serializedFile``: TorchScript (``torch.jit.load``).

Returns ``None`` for an archive with neither file, so the caller reports that nothing
could load it. The file reading itself is ``hookserve.worker.model_files``, which ``BaseHandler``'s
TorchServe helpers use too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hookserve.errors import ArchiveError
from hookserve.hookspecs import hookimpl
from hookserve.worker.model_files import load_eager, load_exported, load_torchscript, worker_device


@hookimpl(trylast=True)
def hookserve_load(archive: Any, context: Any) -> Any:
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
