"""``ts.torch_handler.densenet_handler``: TorchServe 0.12's benchmark handler.

Each request's body is a tensor saved with ``torch.save`` (loaded ``weights_only``); the
batch's stacked tensors go through the model and the output tensor is the batch's one
reply, as in TorchServe. ``list_classes_from_module`` is hookserve's.
"""

from __future__ import annotations

import io
import time
from typing import Any

import torch

from hookserve.handlers.base_handler import BaseHandler
from hookserve.worker.module_loading import list_classes_from_module

__all__ = ["DenseNetHandler", "list_classes_from_module"]


class DenseNetHandler(BaseHandler):
    """Saved tensors in, the model's output for the stacked batch out (one reply)."""

    def handle(self, data: list, context: Any) -> list:
        started = time.time()
        self.context = context
        values = [torch.load(io.BytesIO(row.get("data") or row.get("body")), weights_only=True) for row in data]
        output = self.inference(torch.stack(values))
        context.metrics.add_time("HandlerTime", round((time.time() - started) * 1000, 2), None, "ms")
        return [output]
