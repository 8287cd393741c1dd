"""``ts.utils.util``: the helpers of TorchServe 0.12 that handlers import.

``list_classes_from_module``, ``load_label_mapping`` and ``map_class_to_label`` are
hookserve's own functions, with TorchServe's contracts. ``PredictionException`` is a
:class:`hookserve.errors.PredictionError`, so the worker replies to the batch with its
``error_code`` as the HTTP status and its ``message``, as TorchServe does.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from hookserve.errors import PredictionError
from hookserve.handlers.label_mapping import load_label_mapping, map_class_to_label
from hookserve.worker.module_loading import list_classes_from_module

__all__ = [
    "PredictionException",
    "get_yaml_config",
    "list_classes_from_module",
    "load_label_mapping",
    "map_class_to_label",
]


def get_yaml_config(yaml_file_path: str | os.PathLike) -> Any:
    """The YAML file at ``yaml_file_path``, parsed with ``yaml.safe_load``."""
    with open(yaml_file_path, encoding="utf-8") as f:
        return yaml.safe_load(f)


class PredictionException(PredictionError):
    """Raised by a handler to fail its batch with a chosen status: ``error_code`` (default 500)."""

    def __init__(self, message: str, error_code: int = 500):
        super().__init__(message, code=int(error_code))
        self.error_code = int(error_code)

    def __str__(self) -> str:
        return f"{self.message} : {self.error_code}"
