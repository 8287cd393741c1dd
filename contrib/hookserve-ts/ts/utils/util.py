"""``ts.utils.util``: the helpers of TorchServe 0.12 that handlers import.

``list_classes_from_module``, ``load_label_mapping`` and ``map_class_to_label`` are
hookserve's own functions, with TorchServe's contracts. ``PredictionException`` is a
:class:`hookserve.errors.PredictionError`, so the worker replies to the batch with its
``error_code`` as the HTTP status and its ``message``, as TorchServe does. ``PT2Backend``,
``check_valid_pt2_backend``, ``CLEANUP_REGEX`` and ``deprecated`` are TorchServe's small helpers.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

import yaml

from hookserve.errors import PredictionError
from hookserve.handlers.label_mapping import load_label_mapping, map_class_to_label
from hookserve.handlers.text_utils import CLEANUP_REGEX
from hookserve.worker.module_loading import list_classes_from_module

__all__ = [
    "CLEANUP_REGEX",
    "PT2Backend",
    "PredictionException",
    "check_valid_pt2_backend",
    "deprecated",
    "get_yaml_config",
    "list_classes_from_module",
    "load_label_mapping",
    "map_class_to_label",
]

logger = logging.getLogger(__name__)


class PT2Backend(str, enum.Enum):
    """The ``torch.compile`` backends TorchServe accepts in ``pt2: {compile: {backend: ...}}``."""

    EAGER = "eager"
    AOT_EAGER = "aot_eager"
    INDUCTOR = "inductor"
    NVFUSER = "nvfuser"
    AOT_NVFUSER = "aot_nvfuser"
    AOT_CUDAGRAPHS = "aot_cudagraphs"
    OFI = "ofi"
    FX2TRT = "fx2trt"
    ONNXRT = "onnxrt"
    IPEX = "ipex"
    TORCHXLA_TRACE_ONCE = "torchxla_trace_once"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


def check_valid_pt2_backend(backend: str) -> bool:
    """Whether ``backend`` is one of :class:`PT2Backend`'s values (a warning says when not)."""
    if backend in {member.value for member in PT2Backend}:
        return True
    logger.warning("%s is not a supported backend", backend)
    return False


def deprecated(version: str, replacement: str = "", klass: type[Warning] = PendingDeprecationWarning) -> Callable:
    """Decorator: calling the function warns (``klass``) that it goes away in ``version``."""

    def deprecator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            warnings.warn(f"{func.__name__} is deprecated in {version} and moved to {replacement}", klass, stacklevel=2)
            return func(*args, **kwargs)

        return wrapper

    return deprecator


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
