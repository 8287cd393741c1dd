"""``ts.handler_utils.timer.timed``: TorchServe's opt-in timing of handler methods.

A method decorated with ``@timed`` adds its duration in ms as the metric
``ts_handler_<method name>`` to ``self.context.metrics`` (hookserve's handler metrics) when
the model's ``model-config.yaml`` sets ``handler: {profile: true}``; otherwise it just runs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch


def timed(func: Callable) -> Callable:
    """``func`` (a handler method), timed into ``ts_handler_<name>`` when the model profiles."""

    @functools.wraps(func)
    def wrap_func(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.context.model_yaml_config.get("handler", {}).get("profile"):
            return func(self, *args, **kwargs)
        start = time.perf_counter()
        result = func(self, *args, **kwargs)
        # CUDA kernels run asynchronously: wait for them so the time covers the work.
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.context.metrics.add_time("ts_handler_" + func.__name__, (time.perf_counter() - start) * 1000)
        return result

    return wrap_func
