"""Reading model files onto a worker's device: what the builtin loader plugin and
``BaseHandler``'s TorchServe helpers (``_load_pickled_model``, ``_load_torchscript_model``)
share. torch is imported inside the functions: frontends import the loader plugin, which
imports this module, and must not import torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hookserve.worker.module_loading import import_from_dir, list_classes_from_module


def worker_device(context: Any) -> Any:
    """The worker's ``torch.device``: its GPU when it was given one and CUDA works, else the CPU."""
    import torch

    gpu_id = context.system_properties.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{gpu_id}")
    return torch.device("cpu")


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
